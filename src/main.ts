#!/usr/bin/env node
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { hashKeyCommand } from './auth/hash-key-cli.js';
import { pinsCommand } from './pins-cli.js';
import { catalogReport } from './aggregated/catalog-report.js';
import { run } from './app.js';
import { configHash } from './live-config.js';
import { ConfigError, loadConfigFile, parseConfigText, readConfigText } from './config/load.js';
import { renderEnvoyBootstrap, renderXdsBootstrap } from './envoy/bootstrap.js';
import { unsupportedNode } from './lib/node-version.js';
import { createLogger } from './observability/logger.js';

const USAGE = `usage: mcp-gateway <command> [options]

commands:
  serve --config FILE [--grpc HOST:PORT] [--admin HOST:PORT] [--log-level LEVEL]
                                                               run a processor replica (LEVEL overrides logging.level)
  envoy-config --config FILE [--static]                        print the Envoy bootstrap YAML: by default a small one that
                                                               takes listeners, routes and clusters from the processor
                                                               over xDS (live); --static: all of them in the file
  validate --config FILE [--catalogs]                          check a config file; with --catalogs also read every
                                                               server's lists and report the names /mcp would show
                                                               and their collisions (exit 1 if a server cannot be read)
  hash-key [--key KEY | --generate]                            print the SHA-256 form of an API key (reads stdin)
  pins list --config FILE [--json]                             the pinned tools, and changed ones waiting for approval
  pins approve --config FILE (SERVER/TOOL[@FINGERPRINT]... | --all)
                                                               approve the changed definition of pinned tools
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'hash-key') return hashKeyCommand(rest, process.stdin);
  if (command === 'pins') return pinsCommand(rest);
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: 'string', short: 'c' },
      grpc: { type: 'string' },
      admin: { type: 'string' },
      'log-level': { type: 'string' },
      catalogs: { type: 'boolean' },
      static: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (command === undefined || command === 'help' || values.help === true) {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (values.config === undefined) {
    process.stderr.write(`mcp-gateway ${command}: --config FILE is required\n\n${USAGE}`);
    return 2;
  }
  switch (command) {
    case 'validate': {
      const config = await loadConfigFile(values.config);
      process.stdout.write(`${values.config}: ok (${Object.keys(config.servers).length} servers)\n`);
      if (values.catalogs !== true) return 0;
      const report = await catalogReport(config, { baseDir: dirname(resolve(values.config)), timeoutMs: 10_000 });
      process.stdout.write(report.text);
      process.stdout.write(`${report.collisions} name collision(s), settled as shown; ${report.unreadable} server(s) not read\n`);
      return report.unreadable === 0 ? 0 : 1;
    }
    case 'envoy-config': {
      const config = await loadConfigFile(values.config);
      process.stdout.write(values.static === true ? renderEnvoyBootstrap(config) : renderXdsBootstrap(config));
      return 0;
    }
    case 'serve': {
      const unsupported = unsupportedNode(process.versions.node);
      if (unsupported !== null) {
        process.stderr.write(`mcp-gateway serve: ${unsupported}\n`);
        return 1;
      }
      const text = await readConfigText(values.config);
      const config = parseConfigText(text);
      const log = createLogger(values['log-level'] ?? config.logging.level);
      const gw = await run({
        config,
        logger: log,
        configDir: dirname(resolve(values.config)),
        // Watched: a changed file (a ConfigMap update included) is reloaded, as on SIGHUP.
        configFile: resolve(values.config),
        configHash: configHash(text),
        ...(values.grpc === undefined ? {} : { grpc: values.grpc }),
        ...(values.admin === undefined ? {} : { admin: values.admin }),
      });
      await new Promise<void>((resolve) => {
        const stop = (sig: NodeJS.Signals): void => {
          log.info({ signal: sig }, 'shutting down');
          // A second SIGTERM/SIGINT then finds no handler: Node's default ends the process at once.
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        // Reload the config file now (a bad one is refused and logged; the processor stays up).
        process.on('SIGHUP', () => void gw.reload());
      });
      await gw.drain();
      await gw.close();
      return 0;
    }
    default:
      process.stderr.write(`mcp-gateway: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`invalid config:\n${err.message}\n`);
    } else {
      process.stderr.write(`mcp-gateway: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    process.exitCode = 1;
  },
);
