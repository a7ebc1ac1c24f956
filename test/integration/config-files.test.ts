import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { loadConfigFile } from '../../src/config/load.js';
import { renderEnvoyBootstrap } from '../../src/envoy/bootstrap.js';
import { startDemoServer } from '../fixtures/mcp-servers/demo-server.js';
import { validateEnvoyConfig } from '../support/envoy.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(root, 'dist/src/main.js');

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) out.push(p);
    }
  };
  walk(join(root, dir));
  return out.sort();
}

/** A gateway config has `servers:`; anything else under these folders is an Envoy or k8s file. */
function isGatewayConfig(file: string): boolean {
  const doc = parseYaml(readText(file)) as Record<string, unknown> | null;
  return doc !== null && typeof doc === 'object' && 'servers' in doc;
}

function readText(file: string): string {
  return readFileSync(file, 'utf8');
}

function runCli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, FS_HOST: 'fs.internal' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The CLI as a child process, without blocking this process (its servers must keep answering). */
function runCliAsync(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('config files in the repository', () => {
  const gatewayConfigs = [...yamlFiles('test/fixtures/configs'), ...yamlFiles('deploy')].filter(isGatewayConfig);

  it('finds the configs it is meant to check', () => {
    assert.ok(gatewayConfigs.some((f) => f.endsWith('full.yaml')));
    assert.ok(gatewayConfigs.some((f) => f.includes('deploy/dev/')), gatewayConfigs.join(', '));
  });

  for (const file of gatewayConfigs) {
    it(`${file.slice(root.length)} is valid and its Envoy bootstrap passes envoy --mode validate`, async () => {
      const config = await loadConfigFile(file, { FS_HOST: 'fs.internal' });
      await validateEnvoyConfig(renderEnvoyBootstrap(config));
    });
  }

  for (const file of yamlFiles('envoy')) {
    it(`${file.slice(root.length)} passes envoy --mode validate`, async () => {
      await validateEnvoyConfig(readText(file));
    });
  }
});

describe('mcp-gateway CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('validate accepts a good config', () => {
    const r = runCli('validate', '--config', join(root, 'test/fixtures/configs/full.yaml'));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /ok \(3 servers\)/);
  });

  it('validate rejects a bad one naming the field, with a non-zero exit', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'servers:\n  alpha:\n    url: http://x/mcp\n    rate_limit: fast\n  beta:\n    ur: http://y/mcp\n');
    const r = runCli('validate', '--config', bad);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /servers\.alpha\.rate_limit/);
    assert.match(r.stderr, /servers\.beta/);
    assert.match(r.stderr, /ur/);
  });

  it('validate --catalogs reads every server and reports the names /mcp would show, its collisions and the servers it could not read', async () => {
    const alpha = await startDemoServer({ name: 'alpha' });
    const beta = await startDemoServer({ name: 'beta' });
    try {
      const file = join(dir, 'catalogs.yaml');
      const servers = `servers:\n  alpha:\n    url: ${alpha.url}\n  beta:\n    url: ${beta.url}\n    tools: {echo: {name: beta_echo}}\n`;
      writeFileSync(file, `gateway:\n  prefix: on-collision\n${servers}`);
      const r = await runCliAsync('validate', '--config', file, '--catalogs');
      assert.equal(r.status, 0, r.stderr + r.stdout);
      const tools = r.stdout.split('\n').find((l) => l.startsWith('tools: '))!.slice('tools: '.length).split(', ');
      // beta's echo is renamed, so alpha's keeps its bare name; whoami both have: both prefixed.
      for (const name of ['echo', 'beta_echo', 'alpha__whoami', 'beta__whoami']) assert.ok(tools.includes(name), `${name} in ${tools.join()}`);
      assert.ok(!tools.includes('whoami') && !tools.includes('beta__echo'));
      assert.match(r.stdout, /collision: tools "whoami": no server keeps it unprefixed; prefixed instead: alpha, beta/);
      assert.match(r.stdout, /name collision\(s\), settled as shown; 0 server\(s\) not read/);

      writeFileSync(file, `${servers}  gone:\n    url: http://127.0.0.1:1/mcp\n`);
      const unreadable = await runCliAsync('validate', '--config', file, '--catalogs');
      assert.equal(unreadable.status, 1, unreadable.stdout);
      assert.match(unreadable.stdout, /server gone: catalog not read/);
      assert.match(unreadable.stdout, /1 server\(s\) not read/);
    } finally {
      await Promise.all([alpha.close(), beta.close()]);
    }
  });

  it('validate explains a missing file and a missing --config', () => {
    const missing = runCli('validate', '--config', join(dir, 'nope.yaml'));
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot read/);
    const noFlag = runCli('validate');
    assert.equal(noFlag.status, 2);
    assert.match(noFlag.stderr, /--config FILE is required/);
  });

  it('envoy-config prints a bootstrap that takes the rest from the processor over xDS', () => {
    const r = runCli('envoy-config', '--config', join(root, 'test/fixtures/configs/full.yaml'));
    assert.equal(r.status, 0, r.stderr);
    const doc = parseYaml(r.stdout) as { static_resources: { clusters: { name: string; load_assignment: unknown }[]; listeners?: unknown }; dynamic_resources: Record<string, any> };
    assert.deepEqual(doc.static_resources.clusters.map((c) => c.name), ['mcpgw_processor']);
    assert.match(JSON.stringify(doc.static_resources.clusters[0]!.load_assignment), /19001.*19002/);
    assert.equal(doc.static_resources.listeners, undefined);
    assert.equal(doc.dynamic_resources['ads_config'].grpc_services[0].envoy_grpc.cluster_name, 'mcpgw_processor');
    assert.deepEqual([doc.dynamic_resources['cds_config'], doc.dynamic_resources['lds_config']], [{ ads: {}, resource_api_version: 'V3' }, { ads: {}, resource_api_version: 'V3' }]);
  });

  it('envoy-config --static prints the whole bootstrap with the processor replicas as ext_proc endpoints', () => {
    const r = runCli('envoy-config', '--static', '--config', join(root, 'test/fixtures/configs/full.yaml'));
    assert.equal(r.status, 0, r.stderr);
    const doc = parseYaml(r.stdout) as { static_resources: { clusters: { name: string; load_assignment: unknown }[]; listeners: { name: string }[] } };
    const proc = doc.static_resources.clusters.find((c) => c.name === 'mcpgw_processor');
    assert.match(JSON.stringify(proc?.load_assignment), /19001.*19002/);
    assert.deepEqual(
      doc.static_resources.clusters.map((c) => c.name).sort(),
      ['mcp_database', 'mcp_filesystem', 'mcp_search', 'mcpgw_otlp_collector', 'mcpgw_processor'],
    );
    assert.deepEqual(doc.static_resources.listeners.map((l) => l.name), ['mcp_client', 'mcp_internal']);
    assert.match(r.stdout, /fs\.internal/, '${ENV} substitution reached the cluster');
  });
});
