/**
 * Checks the deployment manifests in deploy/compose, deploy/kubernetes and deploy/istio.
 *
 * Nothing here runs Docker, Kubernetes or Istio. What is checked:
 * - every YAML file parses (multi-document aware) and is used by its compose file or kustomization;
 * - compose: files, ports, service names and health checks agree with gateway.yaml;
 * - Kubernetes: kinds/apiVersions, container ports and probes agree with gateway.yaml, labels and
 *   selectors match, the security context is non-root with a read-only root filesystem;
 *   `kubectl kustomize` builds the kustomizations when kubectl is installed;
 * - the gateway configs pass our schema, and each committed envoy.yaml is exactly what
 *   `envoy-config` prints for its gateway.yaml (the xDS bootstrap: so they cannot drift); the
 *   resources the processor serves it are the full bootstrap's, checked below;
 * - a real Envoy (`envoy --mode validate`) accepts the committed envoy.yaml files and a bootstrap
 *   assembled from the Istio EnvoyFilter's patches (plus routes translated from the
 *   VirtualServices), and the EnvoyFilter's ext_proc filter equals what src/envoy/bootstrap.ts
 *   generates (the DestinationRule carries the generated processor cluster's limits);
 * - only Envoy can reach the processor's ext_proc port in each deployment: loopback in a shared
 *   network namespace (compose, Kubernetes), Istio mTLS + an AuthorizationPolicy naming only the
 *   ingress gateway + a NetworkPolicy (Istio). Each of these checks is also run against broken
 *   copies of the manifests, which it must reject.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, join, posix, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { renderEnvoyBootstrap, renderXdsBootstrap } from '../../src/envoy/bootstrap.js';
import { HEADERS_FIRST } from '../../src/envoy/routes.js';
import { MCP_METHOD_HEADER } from '../../src/mcp/headers.js';
import { localReplyMappers } from '../../src/envoy/local-replies.js';
import { durationMs } from '../../src/lib/duration.js';
import { PROCESSOR_NODE_FLAGS } from '../../src/lib/node-flags.js';
import { validateEnvoyConfig } from '../support/envoy.js';

// Manifests are free-form YAML: walk them as plain JSON values.
type J = any;

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const COMPOSE = join(DEPLOY, 'compose');
const K8S = join(DEPLOY, 'kubernetes');
const ISTIO = join(DEPLOY, 'istio');
const EXT_PROC = 'envoy.filters.http.ext_proc';
const BACKEND_HEADER = 'x-mcpgw-backend';
/** Where the Dockerfile's CMD expects the gateway config; compose and Kubernetes mount it there. */
const CONFIG_PATH = '/etc/mcp-gateway/gateway.yaml';

const read = (file: string): string => readFileSync(file, 'utf8');
const rel = (file: string): string => relative(ROOT, file).split('\\').join('/');

/** Every document of a YAML file (merge keys resolved, as compose does), failing on any parse error. */
function docs(file: string): J[] {
  const all = parseAllDocuments(read(file), { merge: true, uniqueKeys: true });
  const list = Array.isArray(all) ? all : [all];
  for (const d of list) assert.deepEqual(d.errors, [], `${rel(file)}: ${d.errors.map((e) => e.message).join('; ')}`);
  return list.map((d) => d.toJS() as J).filter((d) => d !== null && d !== undefined);
}

function yamlFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...yamlFilesUnder(p));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

function hostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
}

const isLoopback = (host: string): boolean => host === 'localhost' || host.startsWith('127.') || host === '::1';

/**
 * Where `mcp-gateway serve` binds the ext_proc gRPC server, as src/app.ts decides it: `--grpc`
 * when the command line has it, else the first of `gateway.processor`.
 */
function grpcBindAddress(config: Config, args: readonly string[]): string {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--grpc') return args[i + 1]!;
    if (args[i]!.startsWith('--grpc=')) return args[i]!.slice('--grpc='.length);
  }
  const p = config.gateway.processor;
  return Array.isArray(p) ? p[0]! : p;
}

/** The same config with another `gateway.processor` (for the checks' negative cases). */
const withProcessor = (config: Config, processor: string | string[]): Config => ({ ...config, gateway: { ...config.gateway, processor } });

function gatewayConfig(text: string, where: string): Config {
  try {
    return parseConfig(parseYaml(text, { uniqueKeys: true }), {});
  } catch (err) {
    throw new Error(`${where} is not a valid gateway config: ${(err as Error).message}`);
  }
}

/**
 * A committed envoy.yaml = one `# Regenerate ...` line (the command that rewrites the file and
 * keeps that line) + exactly what `mcp-gateway envoy-config` prints for the gateway.yaml next to it.
 */
function checkCommittedBootstrap(dir: string): Config {
  const name = rel(dir);
  const config = gatewayConfig(read(join(dir, 'gateway.yaml')), `${name}/gateway.yaml`);
  const text = read(join(dir, 'envoy.yaml'));
  const nl = text.indexOf('\n');
  const first = text.slice(0, nl);
  assert.match(first, /^# Regenerate /, `${name}/envoy.yaml must start with its regenerate command`);
  assert.ok(first.includes(`f=${name}/envoy.yaml;`) && first.includes(`--config ${name}/gateway.yaml`), first);
  // Live mode: Envoy takes listeners, routes and clusters from the processor over xDS.
  const fresh = renderXdsBootstrap(config);
  assert.ok(
    text.slice(nl + 1) === fresh,
    `${name}/envoy.yaml is stale: regenerate it with the command on its first line (from the repository root, after npm run build)`,
  );
  return config;
}

/** The EnvoyFilter's one patch of a kind (of HTTP_ROUTE patches, the one for that route). */
function findEnvoyFilterPatch(filter: J, applyTo: string, route?: string): J {
  const patches = (filter.spec.configPatches as J[]).filter(
    (p) => p.applyTo === applyTo && (route === undefined || p.match.routeConfiguration?.vhost?.route?.name === route),
  );
  assert.equal(patches.length, 1, `one ${applyTo} patch expected${route === undefined ? '' : ` for route ${route}`}`);
  return patches[0];
}

function generated(config: Config): J {
  return parseYaml(renderEnvoyBootstrap(config));
}

function hcmOf(listener: J): J {
  return listener.filter_chains[0].filters[0].typed_config;
}

// ------------------------------------------------------------------------------------------------

describe('deploy/: every YAML file', () => {
  const files = [COMPOSE, K8S, ISTIO].flatMap(yamlFilesUnder);

  it('finds the manifests', () => {
    for (const f of ['compose/docker-compose.yml', 'kubernetes/kustomization.yaml', 'istio/envoyfilter.yaml']) {
      assert.ok(files.some((p) => rel(p) === `deploy/${f}`), f);
    }
  });

  for (const file of files) {
    it(`${rel(file)} parses`, () => {
      assert.ok(docs(file).length > 0, 'no document');
    });
  }

  it('every file is used: mounted by compose or listed by a kustomization', () => {
    const used = new Set<string>();
    used.add(join(COMPOSE, 'docker-compose.yml'));
    for (const v of composeFile().services.envoy.volumes.concat(composeFile().services.processor.volumes) as string[]) {
      // The processor mounts the directory for its gateway.yaml (so a replaced file is followed).
      const src = v.split(':')[0]!;
      used.add(join(COMPOSE, src === './' ? 'gateway.yaml' : src));
    }
    for (const k of [K8S, ISTIO]) for (const f of kustomizationFiles(k)) used.add(f);
    const unused = files.filter((f) => !used.has(f)).map(rel);
    assert.deepEqual(unused, []);
  });
});

// ------------------------------------------------------------------------------------------------
// Docker

describe('Dockerfile', () => {
  const dockerfile = read(join(ROOT, 'Dockerfile'));

  it('builds with npm ci + npm run build on Node 24 and runs the CLI as a non-root user', () => {
    assert.match(dockerfile, /^ARG NODE_IMAGE=node:24[-\w.]*$/m);
    assert.match(dockerfile, /RUN npm ci\b/);
    assert.match(dockerfile, /RUN npm run build/);
    assert.match(dockerfile, /npm ci --omit=dev/);
    assert.match(dockerfile, /^USER [1-9][0-9]*(:[0-9]+)?$/m);
    const flags = PROCESSOR_NODE_FLAGS.map((flag) => `"${flag}", `).join('');
    assert.ok(dockerfile.split('\n').includes(`ENTRYPOINT ["node", ${flags}"dist/src/main.js"]`), 'the entrypoint starts the processor with its Node flags');
    assert.match(dockerfile, new RegExp(`^CMD \\["serve", "--config", "${CONFIG_PATH}"\\]$`, 'm'));
    // The processor loads protos/ at run time, relative to dist/src/extproc.
    assert.match(dockerfile, /^COPY protos \.\/protos$/m);
    assert.match(dockerfile, /^COPY --from=build \/app\/dist \.\/dist$/m);
  });

  it('.dockerignore keeps the build inputs in the context', () => {
    const ignored = read(join(ROOT, '.dockerignore'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    for (const needed of ['src', 'test', 'scripts', 'protos', 'package.json', 'package-lock.json', 'tsconfig.json']) {
      assert.ok(!ignored.includes(needed), `${needed} must not be in .dockerignore`);
    }
    assert.ok(ignored.includes('node_modules') && ignored.includes('dist'), 'host node_modules/dist stay out of the image');
  });
});

// ------------------------------------------------------------------------------------------------
// compose

let composeCache: J;
function composeFile(): J {
  composeCache ??= docs(join(COMPOSE, 'docker-compose.yml'))[0];
  return composeCache;
}

describe('deploy/compose', () => {
  const compose = composeFile();
  const services = compose.services as Record<string, J>;
  const config = gatewayConfig(read(join(COMPOSE, 'gateway.yaml')), 'deploy/compose/gateway.yaml');
  const g = config.gateway;

  it('has the dev stack services, each built from the Dockerfile or from an image', () => {
    assert.deepEqual(Object.keys(services).sort(), ['alpha', 'beta', 'envoy', 'processor', 'redis']);
    for (const [name, s] of Object.entries(services)) {
      if (s.build !== undefined) {
        assert.ok(existsSync(join(COMPOSE, s.build.context, s.build.dockerfile)), `${name}: build context/dockerfile`);
      } else {
        assert.equal(typeof s.image, 'string', `${name}: image`);
      }
    }
    assert.match(services.envoy.image, /^envoyproxy\/envoy:v1\.40[-.]/);
  });

  it('references only files that exist and services that exist', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const v of (s.volumes ?? []) as string[]) {
        const source = v.split(':')[0]!;
        if (source.startsWith('.')) assert.ok(existsSync(join(COMPOSE, source)), `${name}: ${source} is missing`);
      }
      for (const dep of Object.keys(s.depends_on ?? {})) assert.ok(dep in services, `${name} depends on unknown ${dep}`);
      for (const net of (s.networks ?? []) as string[]) assert.ok(net in compose.networks, `${name}: network ${net}`);
    }
  });

  it('mounts envoy.yaml where Envoy reads it and gateway.yaml where the processor reads it', () => {
    // A file mounted itself, or through its directory (`./`).
    const mountOf = (s: J, file: string): string | undefined => {
      const mounts = ((s.volumes ?? []) as string[]).map((v) => v.split(':'));
      const own = mounts.find(([src]) => src === `./${file}`)?.[1];
      const dir = mounts.find(([src]) => src === './')?.[1];
      return own ?? (dir === undefined ? undefined : posix.join(dir, file));
    };
    const envoyArgs = services.envoy.command as string[];
    assert.equal(mountOf(services.envoy, 'envoy.yaml'), envoyArgs[envoyArgs.indexOf('-c') + 1]);
    const procArgs = services.processor.command as string[];
    assert.equal(procArgs[0], 'serve');
    assert.equal(mountOf(services.processor, 'gateway.yaml'), procArgs[procArgs.indexOf('--config') + 1]);
    assert.equal(mountOf(services.processor, 'gateway.yaml'), CONFIG_PATH);
  });

  it('runs the processor in Envoy\'s network namespace, so the loopback addresses are shared', () => {
    const p = services.processor;
    assert.equal(p.network_mode, 'service:envoy');
    assert.equal(p.ports, undefined, 'ports of a shared namespace are published on envoy');
    assert.equal(p.networks, undefined);
    // gateway.internal is both Envoy's bind address and the processor's target: loopback only works shared.
    for (const key of ['processor', 'internal', 'envoy_admin'] as const) {
      const v = g[key];
      assert.equal(typeof v, 'string');
      assert.ok(isLoopback(hostPort(v as string).host), `gateway.${key} should stay on the shared loopback`);
    }
  });

  it('publishes gateway.listen and the processor admin port on envoy, and probes the right ports', () => {
    const published = (services.envoy.ports as string[]).map((p) => Number(p.split(':').at(-1)));
    assert.ok(published.includes(hostPort(g.listen).port), 'client port');
    assert.ok(published.includes(hostPort(g.admin).port), 'processor admin port');
    assert.notEqual(hostPort(g.listen).host, '127.0.0.1', 'Envoy must listen beyond its container');
    const envoyCheck = (services.envoy.healthcheck.test as string[]).join(' ');
    assert.ok(envoyCheck.includes(`/dev/tcp/127.0.0.1/${hostPort(g.envoy_admin).port}`) && envoyCheck.includes('GET /ready '), envoyCheck);
    const procCheck = (services.processor.healthcheck.test as string[]).join(' ');
    assert.ok(procCheck.includes(`http://127.0.0.1:${hostPort(g.admin).port}/readyz`), procCheck);
  });

  it('points every server at a demo service with the matching --port, bound on 0.0.0.0', () => {
    const demoMain = 'dist/test/fixtures/mcp-servers/demo-main.js';
    assert.ok(existsSync(join(ROOT, demoMain)), `${demoMain} (npm run build)`);
    for (const [name, server] of Object.entries(config.servers)) {
      const url = new URL(server.url);
      const svc = services[url.hostname];
      assert.ok(svc !== undefined, `server ${name}: no compose service ${url.hostname}`);
      assert.ok((svc.networks as string[]).some((n) => (services.envoy.networks as string[]).includes(n)), `${name} shares a network with envoy`);
      assert.deepEqual(svc.entrypoint, ['node', demoMain]);
      const args = svc.command as string[];
      assert.equal(args[args.indexOf('--name') + 1], name);
      assert.equal(args[args.indexOf('--port') + 1], url.port);
      assert.equal(args[args.indexOf('--host') + 1], '0.0.0.0');
      assert.equal(String(svc.environment.PORT), url.port, 'health check port');
    }
  });

  it('points redis.url at the redis service', () => {
    assert.ok(config.redis !== undefined);
    const u = new URL(config.redis.url!);
    assert.equal(u.hostname, 'redis');
    assert.ok((services.redis.networks as string[]).includes('mcp'));
    assert.equal(services.processor.depends_on.redis.condition, 'service_healthy');
  });

  it('envoy.yaml is the bootstrap generated from gateway.yaml', () => {
    checkCommittedBootstrap(COMPOSE);
  });

  it('envoy.yaml passes envoy --mode validate (STRICT_DNS names such as alpha are not resolved in validate mode)', async () => {
    await validateEnvoyConfig(read(join(COMPOSE, 'envoy.yaml')));
  });
});

// ------------------------------------------------------------------------------------------------
// Kubernetes

/** Files a kustomization pulls in (resources, recursively through directories, and generator files). */
function kustomizationFiles(dir: string): string[] {
  const kfile = join(dir, 'kustomization.yaml');
  const k = docs(kfile)[0];
  const out = [kfile];
  for (const r of (k.resources ?? []) as string[]) {
    const p = join(dir, r);
    assert.ok(existsSync(p), `${rel(kfile)}: resource ${r} is missing`);
    if (statSync(p).isDirectory()) out.push(...kustomizationFiles(p));
    else out.push(p);
  }
  for (const gen of (k.configMapGenerator ?? []) as J[]) {
    for (const f of (gen.files ?? []) as string[]) {
      const p = join(dir, f.includes('=') ? f.slice(f.indexOf('=') + 1) : f);
      assert.ok(existsSync(p), `${rel(kfile)}: configMapGenerator file ${f} is missing`);
      out.push(p);
    }
  }
  return out;
}

/** The Kubernetes objects of a kustomization (without generated ones). */
function kustomizationObjects(dir: string): J[] {
  const k = docs(join(dir, 'kustomization.yaml'))[0];
  return ((k.resources ?? []) as string[]).flatMap((r) => {
    const p = join(dir, r);
    return statSync(p).isDirectory() ? kustomizationObjects(p) : docs(p);
  });
}

const KNOWN_KINDS: Record<string, string> = {
  Namespace: 'v1',
  ConfigMap: 'v1',
  Service: 'v1',
  Deployment: 'apps/v1',
  PodDisruptionBudget: 'policy/v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  Gateway: 'networking.istio.io/v1',
  VirtualService: 'networking.istio.io/v1',
  DestinationRule: 'networking.istio.io/v1',
  EnvoyFilter: 'networking.istio.io/v1alpha3',
  PeerAuthentication: 'security.istio.io/v1',
  AuthorizationPolicy: 'security.istio.io/v1',
};

function kubectl(): string | undefined {
  for (const d of (process.env['PATH'] ?? '').split(delimiter)) {
    const p = join(d, 'kubectl');
    if (d !== '' && existsSync(p)) return p;
  }
  return undefined;
}

const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

function checkWorkloadHardening(obj: J): void {
  const spec = obj.spec.template.spec;
  assert.equal(spec.securityContext?.runAsNonRoot, true, `${obj.metadata.name}: runAsNonRoot`);
  assert.equal(spec.automountServiceAccountToken, false, `${obj.metadata.name}: no service account token`);
  for (const c of spec.containers as J[]) {
    const where = `${obj.metadata.name}/${c.name}`;
    const sc = c.securityContext ?? {};
    assert.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
    assert.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
    assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${where}: capabilities`);
    const uid = sc.runAsUser ?? spec.securityContext.runAsUser;
    assert.ok(Number.isInteger(uid) && uid > 0, `${where}: numeric non-root runAsUser (images may name users)`);
    assert.ok(c.resources?.requests?.cpu !== undefined && c.resources?.requests?.memory !== undefined, `${where}: resource requests`);
    assert.ok(c.resources?.limits?.memory !== undefined, `${where}: memory limit`);
    assert.ok(c.readinessProbe !== undefined, `${where}: readiness probe`);
  }
}

function portByName(container: J, name: string | number): number {
  if (typeof name === 'number') return name;
  const p = (container.ports as J[]).find((x) => x.name === name);
  assert.ok(p !== undefined, `${container.name}: no port named ${name}`);
  return p.containerPort;
}

describe('deploy/kubernetes', () => {
  const objects = kustomizationObjects(K8S);
  const kustomization = docs(join(K8S, 'kustomization.yaml'))[0];
  const config = gatewayConfig(read(join(K8S, 'gateway.yaml')), 'deploy/kubernetes/gateway.yaml');
  const g = config.gateway;
  const byKind = (kind: string): J[] => objects.filter((o) => o.kind === kind);
  const named = (kind: string, name: string): J => {
    const o = byKind(kind).find((x) => x.metadata.name === name);
    assert.ok(o !== undefined, `${kind} ${name} missing`);
    return o;
  };
  const gateway = named('Deployment', 'mcp-gateway');
  const pod = gateway.spec.template;
  const container = (name: string): J => (pod.spec.containers as J[]).find((c) => c.name === name);

  it('uses known kinds with their apiVersions, each object named', () => {
    for (const o of objects) {
      assert.equal(o.apiVersion, KNOWN_KINDS[o.kind], `${o.kind} ${o.metadata?.name}`);
      assert.match(o.metadata.name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
    assert.equal(kustomization.kind, 'Kustomization');
    assert.equal(kustomization.apiVersion, 'kustomize.config.k8s.io/v1beta1');
  });

  it('runs Envoy and the processor as two containers of one Pod, each reading its generated ConfigMap', () => {
    assert.deepEqual((pod.spec.containers as J[]).map((c) => c.name).sort(), ['envoy', 'processor']);
    assert.equal(pod.spec.hostNetwork, undefined, 'the Pod network namespace is shared by its containers');
    const gens = kustomization.configMapGenerator as J[];
    const map = { 'gateway.yaml': 'mcp-gateway-processor-config', 'envoy.yaml': 'mcp-gateway-envoy-config' } as const;
    assert.deepEqual(gens.find((x) => x.name === map['gateway.yaml']).files, ['gateway.yaml']);
    assert.deepEqual(gens.find((x) => x.name === map['envoy.yaml']).files, ['envoy.yaml']);
    // The processor's ConfigMap keeps its name: a change reaches the running processor, which reloads it.
    assert.equal(gens.find((x) => x.name === map['gateway.yaml']).options?.disableNameSuffixHash, true);
    const fileFrom = (c: J, key: 'gateway.yaml' | 'envoy.yaml'): string => {
      for (const m of c.volumeMounts as J[]) {
        const vol = (pod.spec.volumes as J[]).find((v) => v.name === m.name);
        assert.equal(vol?.configMap?.items?.some((i: J) => i.path.includes('/')) ?? false, false, 'no subPath-like mounts: a projected ConfigMap only updates whole volumes');
        const item = vol?.configMap?.name === map[key] ? (vol.configMap.items as J[]).find((i) => i.key === key) : undefined;
        if (item !== undefined) return posix.join(m.mountPath, item.path);
      }
      assert.fail(`${c.name} does not mount ${key}`);
    };
    const envoy = container('envoy');
    const envoyArgs = envoy.args as string[];
    assert.equal(fileFrom(envoy, 'envoy.yaml'), envoyArgs[envoyArgs.indexOf('-c') + 1]);
    assert.ok(envoyArgs.includes('--disable-hot-restart'));
    assert.match(envoy.image, /^envoyproxy\/envoy:v1\.40[-.]/);
    const proc = container('processor');
    const procArgs = proc.args as string[];
    assert.equal(fileFrom(proc, 'gateway.yaml'), procArgs[procArgs.indexOf('--config') + 1]);
    assert.equal(fileFrom(proc, 'gateway.yaml'), CONFIG_PATH);
  });

  it('container ports and probes match gateway.yaml', () => {
    const envoy = container('envoy');
    const proc = container('processor');
    assert.equal(portByName(envoy, 'mcp'), hostPort(g.listen).port);
    assert.equal(hostPort(g.listen).host, '0.0.0.0');
    assert.equal(portByName(proc, 'admin'), hostPort(g.admin).port);
    assert.equal(hostPort(g.admin).host, '0.0.0.0', 'kubelet probes reach the admin port on the Pod IP');
    for (const key of ['processor', 'internal', 'envoy_admin'] as const) {
      assert.ok(isLoopback(hostPort(g[key] as string).host), `gateway.${key} stays pod-local`);
    }
    assert.equal(proc.readinessProbe.httpGet.path, '/readyz');
    assert.equal(proc.livenessProbe.httpGet.path, '/healthz');
    for (const probe of [proc.readinessProbe, proc.livenessProbe, proc.startupProbe]) {
      assert.equal(portByName(proc, probe.httpGet.port), hostPort(g.admin).port);
    }
    const ready = (envoy.readinessProbe.exec.command as string[]).join(' ');
    assert.ok(ready.includes(`/dev/tcp/127.0.0.1/${hostPort(g.envoy_admin).port}`) && ready.includes('GET /ready '), ready);
    assert.ok((envoy.livenessProbe.exec.command as string[]).join(' ').includes(`/dev/tcp/127.0.0.1/${hostPort(g.envoy_admin).port}`));
  });

  it('the Services and the PodDisruptionBudget select the gateway Pods on the right ports', () => {
    const labels = pod.metadata.labels as Record<string, string>;
    assert.ok(matches(gateway.spec.selector.matchLabels, labels));
    const svc = named('Service', 'mcp-gateway');
    assert.ok(matches(svc.spec.selector, labels));
    assert.equal(portByName(container('envoy'), svc.spec.ports[0].targetPort), hostPort(g.listen).port);
    const admin = named('Service', 'mcp-gateway-admin');
    assert.ok(matches(admin.spec.selector, labels));
    assert.equal(portByName(container('processor'), admin.spec.ports[0].targetPort), hostPort(g.admin).port);
    const pdb = named('PodDisruptionBudget', 'mcp-gateway');
    assert.ok(matches(pdb.spec.selector.matchLabels, labels));
    assert.ok(pdb.spec.minAvailable < gateway.spec.replicas, 'a PDB must leave room for one disruption');
  });

  it('every workload is non-root with a read-only root filesystem, requests and probes', () => {
    for (const d of byKind('Deployment')) checkWorkloadHardening(d);
  });

  it('gateway.yaml names Services of this kustomization (servers with their ports, and Redis)', () => {
    for (const [name, server] of Object.entries(config.servers)) {
      const url = new URL(server.url);
      const svc = named('Service', url.hostname);
      const port = (svc.spec.ports as J[]).find((p) => String(p.port) === url.port);
      assert.ok(port !== undefined, `server ${name}: Service ${url.hostname} has no port ${url.port}`);
      const backend = byKind('Deployment').find((d) => matches(svc.spec.selector, d.spec.template.metadata.labels));
      assert.ok(backend !== undefined, `Service ${url.hostname} selects no Deployment`);
      const c = backend.spec.template.spec.containers[0];
      assert.equal(portByName(c, port.targetPort), Number(url.port));
      const args = [...(c.command ?? []), ...(c.args ?? [])] as string[];
      assert.ok(existsSync(join(ROOT, args[1]!)), `${args[1]} (npm run build)`);
      assert.equal(args[args.indexOf('--port') + 1], url.port);
      assert.equal(args[args.indexOf('--host') + 1], '0.0.0.0');
    }
    assert.ok(config.redis !== undefined);
    const redisUrl = new URL(config.redis.url!);
    const redis = named('Service', redisUrl.hostname);
    assert.ok((redis.spec.ports as J[]).some((p) => String(p.port) === redisUrl.port));
    const policy = named('NetworkPolicy', 'mcp-gateway-redis');
    assert.ok(matches(policy.spec.ingress[0].from[0].podSelector.matchLabels, pod.metadata.labels), 'gateway Pods may reach Redis');
  });

  it('envoy.yaml is the bootstrap generated from gateway.yaml', () => {
    checkCommittedBootstrap(K8S);
  });

  it('envoy.yaml passes envoy --mode validate', async () => {
    await validateEnvoyConfig(read(join(K8S, 'envoy.yaml')));
  });

  it('kubectl kustomize builds it, with the generated ConfigMap wired into the Pod', (t) => {
    const bin = kubectl();
    if (bin === undefined) {
      t.skip('kubectl not installed');
      return;
    }
    const r = spawnSync(bin, ['kustomize', K8S], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const built = parseAllDocuments(r.stdout).map((d) => d.toJS() as J);
    const maps = built.filter((o) => o.kind === 'ConfigMap');
    const processorMap = maps.find((o) => o.data?.['gateway.yaml'] !== undefined);
    const envoyMap = maps.find((o) => o.data?.['envoy.yaml'] !== undefined);
    assert.equal(processorMap.metadata.name, 'mcp-gateway-processor-config');
    assert.match(envoyMap.metadata.name, /^mcp-gateway-envoy-config-[a-z0-9]+$/);
    assert.equal(processorMap.data['gateway.yaml'], read(join(K8S, 'gateway.yaml')));
    assert.equal(envoyMap.data['envoy.yaml'], read(join(K8S, 'envoy.yaml')));
    const dep = built.find((o) => o.kind === 'Deployment' && o.metadata.name === 'mcp-gateway');
    const names = (dep.spec.template.spec.volumes as J[]).filter((v) => v.configMap !== undefined).map((v) => v.configMap.name).sort();
    assert.deepEqual(names, [envoyMap.metadata.name, processorMap.metadata.name].sort());
    for (const o of built) if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, 'mcp-gateway', `${o.kind} ${o.metadata.name}`);
  });
});

// ------------------------------------------------------------------------------------------------
// Istio

/** `outbound|PORT||HOST`, the cluster name Istio gives a Service port. */
const istioCluster = (host: string, port: number): string => `outbound|${port}||${host}`;

/** A rough translation of VirtualService HTTP routes into Envoy routes (what Istio would generate). */
function envoyRoutes(vs: J): { routes: J[]; clusters: Map<string, { host: string; port: number }> } {
  const clusters = new Map<string, { host: string; port: number }>();
  const routes = (vs.spec.http as J[]).map((r) => {
    const m = (r.match ?? [{}])[0];
    const match: J = {};
    if (m.uri?.exact !== undefined) match.path = m.uri.exact;
    else match.prefix = '/';
    const headers: J[] = Object.entries((m.headers ?? {}) as Record<string, J>).map(([name, v]) => ({ name, string_match: { exact: v.exact } }));
    if (m.method?.exact !== undefined) headers.push({ name: ':method', string_match: { exact: m.method.exact } });
    if (headers.length > 0) match.headers = headers;
    if (r.directResponse !== undefined) {
      return { name: r.name, match, direct_response: { status: r.directResponse.status, body: { inline_string: r.directResponse.body.string } } };
    }
    const d = r.route[0].destination;
    const cluster = istioCluster(d.host, d.port.number);
    clusters.set(cluster, { host: d.host, port: d.port.number });
    return {
      name: r.name,
      match,
      request_headers_to_remove: r.headers?.request?.remove,
      route: {
        cluster,
        ...(r.rewrite?.uri !== undefined ? { prefix_rewrite: r.rewrite.uri } : {}),
        ...(r.rewrite?.authority !== undefined ? { host_rewrite_literal: r.rewrite.authority } : {}),
        timeout: r.timeout,
        retry_policy: { retry_on: r.retries.retryOn, num_retries: r.retries.attempts },
      },
    };
  });
  return { routes, clusters };
}

describe('deploy/istio', () => {
  const objects = kustomizationObjects(ISTIO);
  const one = (kind: string, name: string): J => {
    const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
    assert.ok(o !== undefined, `${kind} ${name} missing`);
    return o;
  };
  const filter = one('EnvoyFilter', 'mcp-gateway-ext-proc');
  const configMap = one('ConfigMap', 'mcp-gateway-processor');
  const config = gatewayConfig(configMap.data['gateway.yaml'], 'deploy/istio/processor-config.yaml (gateway.yaml)');
  const g = config.gateway;
  const gen = generated(config);
  const genHcm = hcmOf(gen.static_resources.listeners[0]);
  const filterPatch = findEnvoyFilterPatch(filter, 'HTTP_FILTER');
  const vhostPatch = findEnvoyFilterPatch(filter, 'VIRTUAL_HOST');
  const listenerPatch = findEnvoyFilterPatch(filter, 'LISTENER');
  const hcmPatch = findEnvoyFilterPatch(filter, 'NETWORK_FILTER');
  const routePatch = findEnvoyFilterPatch(filter, 'HTTP_ROUTE', 'mcp-stream');
  const listenPatch = findEnvoyFilterPatch(filter, 'HTTP_ROUTE', 'mcp-listen');
  const routePatches = (filter.spec.configPatches as J[]).filter((p) => p.applyTo === 'HTTP_ROUTE');
  const istioGateway = one('Gateway', 'mcp-gateway');
  const clientVs = one('VirtualService', 'mcp-gateway');
  const internalVs = one('VirtualService', 'mcp-gateway-internal');
  const processor = one('Deployment', 'mcp-gateway-processor');
  const processorSvc = one('Service', 'mcp-gateway-processor');
  const processorHost = `${processorSvc.metadata.name}.${processorSvc.metadata.namespace}.svc.cluster.local`;
  const grpcSvcPort = (processorSvc.spec.ports as J[]).find((p) => p.name === 'grpc');
  /** The cluster Istio builds for the processor Service's grpc port; ext_proc calls it. */
  const processorCluster = istioCluster(processorHost, grpcSvcPort.port);
  const destinationRule = one('DestinationRule', 'mcp-gateway-processor');

  it('uses known kinds with their apiVersions', () => {
    for (const o of objects) assert.equal(o.apiVersion, KNOWN_KINDS[o.kind], `${o.kind} ${o.metadata?.name}`);
    assert.equal(filter.metadata.namespace, 'istio-system');
    for (const p of filter.spec.configPatches as J[]) assert.equal(p.match.context, 'GATEWAY');
    assert.deepEqual(filter.spec.workloadSelector.labels, istioGateway.spec.selector, 'the EnvoyFilter patches the gateway the Gateway selects');
  });

  it('inserts exactly the ext_proc filter our generated bootstrap uses (but calling Istio\'s processor cluster), before the router', () => {
    assert.equal(filterPatch.patch.operation, 'INSERT_BEFORE');
    assert.equal(filterPatch.match.listener.filterChain.filter.subFilter.name, 'envoy.filters.http.router');
    const ours = structuredClone((genHcm.http_filters as J[]).find((f) => f.name === EXT_PROC));
    ours.typed_config.grpc_service.envoy_grpc.cluster_name = processorCluster;
    // Istio's routes cannot match route metadata: the processor sees the headers first there and
    // routes by the backend header, so only our own namespace is written.
    ours.typed_config.processing_mode = HEADERS_FIRST;
    delete ours.typed_config.request_attributes;
    ours.typed_config.metadata_options.receiving_namespaces.untyped = ['mcp.gateway'];
    assert.deepEqual(filterPatch.patch.value, ours);
    // The essentials, spelled out (deepEqual above already implies them).
    const tc = filterPatch.patch.value.typed_config;
    assert.equal(tc.processing_mode.request_body_mode, 'BUFFERED');
    assert.equal(tc.allow_mode_override, true);
    assert.equal(tc.failure_mode_allow, false);
    assert.deepEqual(tc.metadata_options.receiving_namespaces.untyped, ['mcp.gateway']);
    assert.equal(tc.grpc_service.envoy_grpc.cluster_name, processorCluster);
  });

  it("calls the processor through Istio's cluster for its Service, with the generated multi-replica cluster's settings in the DestinationRule", () => {
    // No cluster of our own: it could not carry the gateway's Istio identity (see the access checks below).
    assert.deepEqual((filter.spec.configPatches as J[]).filter((p) => p.applyTo === 'CLUSTER'), []);
    const replicas = withProcessor(config, ['10.0.0.1:9001', '10.0.0.2:9001']);
    const ours = (generated(replicas).static_resources.clusters as J[]).find((c) => c.name === 'mcpgw_processor');
    // An EDS cluster of every ready Pod, over HTTP/2: a ClusterIP Service (a headless one gets a
    // passthrough cluster) whose grpc port is declared as gRPC, on the port the processor binds.
    assert.equal(processorSvc.spec.clusterIP, undefined, 'not headless');
    assert.equal(grpcSvcPort.appProtocol, 'grpc');
    const proc = processor.spec.template.spec.containers[0];
    assert.equal(portByName(proc, grpcSvcPort.targetPort), hostPort(grpcBindAddress(config, proc.args)).port);
    const tp = destinationRule.spec.trafficPolicy;
    assert.equal(destinationRule.spec.host, processorHost);
    assert.equal(tp.connectionPool.tcp.connectTimeout, ours.connect_timeout);
    assert.equal(tp.loadBalancer.simple, ours.lb_policy);
    const limits = ours.circuit_breakers.thresholds[0];
    assert.equal(tp.connectionPool.tcp.maxConnections, limits.max_connections);
    assert.equal(tp.connectionPool.http.http1MaxPendingRequests, limits.max_pending_requests);
    assert.equal(tp.connectionPool.http.http2MaxRequests, limits.max_requests);
    assert.equal(tp.connectionPool.http.maxRetries, limits.max_retries);
    // Istio turns minHealthPercent into healthy_panic_threshold: never spread over dead replicas.
    assert.equal(tp.outlierDetection.minHealthPercent, ours.common_lb_config.healthy_panic_threshold.value);
    assert.equal(tp.outlierDetection.consecutiveLocalOriginFailures, 1, 'a replica that refuses connections is ejected at once');
    assert.equal(tp.outlierDetection.splitExternalLocalOriginErrors, true);
  });

  it("maps Envoy's own answers to JSON-RPC errors as the generated bootstrap does, minus the server name Istio's routes cannot carry", () => {
    assert.equal(hcmPatch.patch.operation, 'MERGE');
    assert.equal(hcmPatch.match.listener.portNumber, filterPatch.match.listener.portNumber);
    assert.equal(hcmPatch.match.listener.filterChain.filter.name, 'envoy.filters.network.http_connection_manager');
    assert.deepEqual(hcmPatch.patch.value.typed_config.local_reply_config, { mappers: localReplyMappers({ serverInRouteMetadata: false }) });
    // The generated one differs only in naming the server.
    const generatedMessages = JSON.stringify(genHcm.local_reply_config).replaceAll(': %METADATA(ROUTE:mcp.gateway:server)%', '');
    assert.equal(generatedMessages, JSON.stringify(hcmPatch.patch.value.typed_config.local_reply_config));
  });

  it('enables ext_proc on the MCP virtual host only, and keeps the gateway limits in step with gateway.yaml', () => {
    const server = istioGateway.spec.servers[0];
    assert.equal(vhostPatch.match.routeConfiguration.vhost.name, `${server.hosts[0]}:${server.port.number}`);
    assert.equal(vhostPatch.patch.operation, 'MERGE');
    const ourVhost = genHcm.route_config.virtual_hosts[0];
    assert.deepEqual(vhostPatch.patch.value.typed_per_filter_config, ourVhost.typed_per_filter_config);
    assert.deepEqual(vhostPatch.patch.value.request_headers_to_remove, genHcm.route_config.request_headers_to_remove);
    assert.equal(listenerPatch.patch.value.per_connection_buffer_limit_bytes, g.max_body_bytes);
    assert.equal(listenerPatch.match.listener.portNumber, filterPatch.match.listener.portNumber);
    assert.deepEqual(clientVs.spec.hosts, server.hosts);
    assert.deepEqual(g.allowed_hosts, server.hosts, 'the processor accepts the MCP host');
  });

  it('has client routes for every server: aggregated by backend header, passthrough, and the safety net', () => {
    const routes = clientVs.spec.http as J[];
    assert.deepEqual(clientVs.spec.gateways, [istioGateway.metadata.name]);
    for (const [name, server] of Object.entries(config.servers)) {
      const url = new URL(server.url);
      const expect = (routeName: string, uri: string, headers: J | undefined, method?: string): void => {
        const r = routes.find((x) => x.name === routeName);
        assert.ok(r !== undefined, routeName);
        const m = r.match[0];
        assert.equal(m.uri.exact, uri, routeName);
        assert.deepEqual(m.headers, headers, routeName);
        assert.equal(m.method?.exact, method, routeName);
        assert.equal(r.rewrite.uri, url.pathname + url.search, routeName);
        assert.equal(r.rewrite.authority, url.hostname, routeName);
        assert.deepEqual(r.route[0].destination, { host: url.hostname, port: { number: Number(url.port) } }, routeName);
        assert.deepEqual(r.headers.request.remove, [BACKEND_HEADER], routeName);
        assert.equal(r.retries.retryOn, 'connect-failure,refused-stream,reset-before-request', routeName);
      };
      expect(`${name}-aggregated`, '/mcp', { [BACKEND_HEADER]: { exact: name } });
      expect(`${name}-passthrough-stream`, `/servers/${name}/mcp`, undefined, 'GET');
      expect(`${name}-passthrough-listen`, `/servers/${name}/mcp`, { [MCP_METHOD_HEADER]: { exact: 'subscriptions/listen' } }, 'POST');
      expect(`${name}-passthrough`, `/servers/${name}/mcp`, undefined);
      const names = routes.map((r) => r.name);
      const timeout = (n: string): unknown => routes.find((x) => x.name === n).timeout;
      // The long-lived streams are not cut by the server's request timeout.
      assert.equal(timeout(`${name}-passthrough-stream`), '0s');
      assert.equal(timeout(`${name}-passthrough-listen`), '0s');
      assert.equal(timeout(`${name}-passthrough`), `${durationMs(server.timeout) / 1000}s`);
      assert.ok(names.indexOf(`${name}-passthrough-stream`) < names.indexOf(`${name}-passthrough`), 'GET stream route first');
      assert.ok(names.indexOf(`${name}-passthrough-listen`) < names.indexOf(`${name}-passthrough`), 'listen route first');
    }
    const last = routes.at(-1);
    assert.equal(last.directResponse?.status, 500);
    assert.equal(last.match, undefined, 'the safety net matches everything');
  });

  it('lets the processor stream GET /mcp itself: its route sends no request body, as the generated bootstrap’s does', () => {
    const server = istioGateway.spec.servers[0];
    assert.equal(routePatch.match.routeConfiguration.vhost.name, `${server.hosts[0]}:${server.port.number}`);
    assert.equal(routePatch.patch.operation, 'MERGE');
    const name = routePatch.match.routeConfiguration.vhost.route.name;
    const route = (clientVs.spec.http as J[]).find((r) => r.name === name);
    assert.ok(route !== undefined, `the VirtualService has route ${name}`);
    assert.deepEqual(route.match, [{ uri: { exact: '/mcp' }, method: { exact: 'GET' } }]);
    const ours = (genHcm.route_config.virtual_hosts[0].routes as J[]).find((r) => r.name === 'mcp_stream');
    assert.deepEqual(routePatch.patch.value.typed_per_filter_config, ours.typed_per_filter_config);
    assert.equal(routePatch.patch.value.typed_per_filter_config[EXT_PROC].overrides.processing_mode.request_body_mode, 'NONE');
  });

  it('lets the processor hold a subscriptions/listen POST on /mcp and stream it: its body goes full-duplex, as the generated bootstrap’s mcp_listen does', () => {
    assert.deepEqual(listenPatch.match.routeConfiguration.vhost.name, routePatch.match.routeConfiguration.vhost.name);
    assert.equal(listenPatch.patch.operation, 'MERGE');
    const routes = clientVs.spec.http as J[];
    const route = routes.find((r) => r.name === 'mcp-listen');
    assert.ok(route !== undefined, 'the VirtualService has route mcp-listen');
    assert.deepEqual(route.match, [{ uri: { exact: '/mcp' }, method: { exact: 'POST' }, headers: { [MCP_METHOD_HEADER]: { exact: 'subscriptions/listen' } } }]);
    assert.equal(route.directResponse?.status, 500, 'the processor answers it; reaching the route is a bug');
    // Before the safety net, and after every aggregated route (those match only once the
    // processor has set the backend header, which it never does for a listen).
    const names = routes.map((r) => r.name);
    assert.ok(names.indexOf('mcp-listen') < names.indexOf('unrouted'));
    const ours = (genHcm.route_config.virtual_hosts[0].routes as J[]).find((r) => r.name === 'mcp_listen');
    assert.deepEqual(listenPatch.patch.value.typed_per_filter_config, ours.typed_per_filter_config);
    assert.equal(listenPatch.patch.value.typed_per_filter_config[EXT_PROC].overrides.processing_mode.request_body_mode, 'FULL_DUPLEX_STREAMED');
    assert.equal(routePatches.length, 2, 'no other route patch');
  });

  it("routes the processor's internal calls (gateway.internal) through its own sidecar, by backend header", () => {
    const internal = hostPort(g.internal);
    const svc = one('Service', 'mcpgw-internal');
    assert.equal(internal.host, `${svc.metadata.name}.${svc.metadata.namespace}.svc.cluster.local`);
    assert.equal(svc.spec.ports[0].port, internal.port);
    assert.equal(svc.spec.selector, undefined, 'no endpoints: the sidecar routes by VirtualService');
    assert.deepEqual(internalVs.spec.hosts, [internal.host]);
    assert.equal(internalVs.spec.gateways, undefined, 'mesh (sidecars), not the ingress gateway');
    assert.deepEqual(internalVs.spec.exportTo, ['.']);
    assert.equal(processor.metadata.namespace, internalVs.metadata.namespace);
    for (const [name, server] of Object.entries(config.servers)) {
      const url = new URL(server.url);
      const r = (internalVs.spec.http as J[]).find((x) => x.name === `${name}-internal`);
      assert.ok(r !== undefined, `${name}-internal`);
      assert.deepEqual(r.match[0].headers, { [BACKEND_HEADER]: { exact: name } });
      assert.equal(r.match[0].uri, undefined, 'the processor already sends the server path');
      assert.deepEqual(r.route[0].destination, { host: url.hostname, port: { number: Number(url.port) } });
      assert.deepEqual(r.headers.request.remove, [BACKEND_HEADER]);
      // The upstream GET streams the processor holds for clients' streams on /mcp, and their
      // subscriptions/listen successors: no timeout, before the server's general route.
      const names = (internalVs.spec.http as J[]).map((x) => x.name);
      const stream = (internalVs.spec.http as J[]).find((x) => x.name === `${name}-internal-stream`);
      assert.ok(stream !== undefined, `${name}-internal-stream`);
      assert.deepEqual(stream.match[0], { method: { exact: 'GET' }, headers: { [BACKEND_HEADER]: { exact: name } } });
      assert.equal(stream.timeout, '0s');
      assert.deepEqual(stream.route, r.route);
      assert.ok(names.indexOf(`${name}-internal-stream`) < names.indexOf(`${name}-internal`), 'stream route first');
      const listen = (internalVs.spec.http as J[]).find((x) => x.name === `${name}-internal-listen`);
      assert.ok(listen !== undefined, `${name}-internal-listen`);
      assert.deepEqual(listen.match[0], {
        method: { exact: 'POST' },
        headers: { [BACKEND_HEADER]: { exact: name }, [MCP_METHOD_HEADER]: { exact: 'subscriptions/listen' } },
      });
      assert.equal(listen.timeout, '0s');
      assert.deepEqual(listen.route, r.route);
      assert.ok(names.indexOf(`${name}-internal-listen`) < names.indexOf(`${name}-internal`), 'listen route first');
    }
  });

  it('the processor Deployment is hardened and probed on its admin port', () => {
    checkWorkloadHardening(processor);
    const proc = processor.spec.template.spec.containers[0];
    assert.equal(proc.readinessProbe.httpGet.path, '/readyz');
    assert.equal(proc.livenessProbe.httpGet.path, '/healthz');
    assert.equal(portByName(proc, proc.readinessProbe.httpGet.port), hostPort(g.admin).port);
    const volume = (processor.spec.template.spec.volumes as J[]).find((v) => v.configMap?.name === configMap.metadata.name);
    const mount = (proc.volumeMounts as J[]).find((m) => m.name === volume.name);
    assert.equal(posix.join(mount.mountPath, 'gateway.yaml'), CONFIG_PATH);
    assert.ok(matches(processorSvc.spec.selector, processor.spec.template.metadata.labels));
    const pdb = one('PodDisruptionBudget', 'mcp-gateway-processor');
    assert.ok(matches(pdb.spec.selector.matchLabels, processor.spec.template.metadata.labels));
  });

  /**
   * What the ingress gateway's Envoy would run, assembled from the patches: the CLUSTER value as a
   * cluster; the LISTENER value merged into a listener; the HTTP_FILTER value before the router;
   * the VIRTUAL_HOST value merged into the MCP virtual host, whose routes are translated from the
   * VirtualService (plus a listener with the internal routes). Istio's own additions are absent.
   */
  function assembledBootstrap(mutateExtProc?: (f: J) => void): string {
    const extProc = structuredClone(filterPatch.patch.value);
    mutateExtProc?.(extProc);
    const client = envoyRoutes(clientVs);
    const internal = envoyRoutes(internalVs);
    const server = istioGateway.spec.servers[0];
    const host = server.hosts[0] as string;
    const hcm = (statPrefix: string, vhost: J, filters: J[]): J => ({
      name: 'envoy.filters.network.http_connection_manager',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        stat_prefix: statPrefix,
        route_config: { name: statPrefix, virtual_hosts: [vhost] },
        http_filters: [...filters, { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
        ...(statPrefix === 'internal' ? {} : { local_reply_config: hcmPatch.patch.value.typed_config.local_reply_config }),
      },
    });
    const upstreams = new Map([...client.clusters, ...internal.clusters]);
    const bootstrap = {
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
      static_resources: {
        listeners: [
          {
            name: `0.0.0.0_${filterPatch.match.listener.portNumber}`,
            address: { socket_address: { address: '0.0.0.0', port_value: filterPatch.match.listener.portNumber } },
            ...listenerPatch.patch.value,
            filter_chains: [
              {
                filters: [
                  hcm(
                    `http.${server.port.number}`,
                    {
                      name: vhostPatch.match.routeConfiguration.vhost.name,
                      domains: [host, `${host}:*`],
                      routes: client.routes.map((r) => {
                        const patch = routePatches.find((p) => p.match.routeConfiguration.vhost.route.name === r.name);
                        return patch === undefined ? r : { ...r, ...patch.patch.value };
                      }),
                      ...vhostPatch.patch.value,
                    },
                    [extProc],
                  ),
                ],
              },
            ],
          },
          {
            name: 'sidecar_outbound_internal',
            address: { socket_address: { address: '127.0.0.1', port_value: hostPort(g.internal).port } },
            filter_chains: [{ filters: [hcm('internal', { name: 'internal', domains: ['*'], routes: internal.routes }, [])] }],
          },
        ],
        clusters: [
          processorStandIn(),
          ...[...upstreams.entries()].map(([name, u]) => ({
            name,
            type: 'STRICT_DNS',
            connect_timeout: '2s',
            load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: u.host, port_value: u.port } } } }] }] },
          })),
        ],
      },
    };
    return JSON.stringify(bootstrap, null, 2);
  }

  /**
   * A stand-in for the cluster Istio builds for the processor Service (EDS, Istio mTLS), with the
   * DestinationRule's settings translated the way Istio applies them.
   */
  function processorStandIn(): J {
    const tp = destinationRule.spec.trafficPolicy;
    const od = tp.outlierDetection;
    return {
      name: processorCluster,
      type: 'STRICT_DNS',
      connect_timeout: tp.connectionPool.tcp.connectTimeout,
      lb_policy: tp.loadBalancer.simple,
      load_assignment: {
        cluster_name: processorCluster,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: processorHost, port_value: grpcSvcPort.port } } } }] }],
      },
      circuit_breakers: {
        thresholds: [
          {
            max_connections: tp.connectionPool.tcp.maxConnections,
            max_pending_requests: tp.connectionPool.http.http1MaxPendingRequests,
            max_requests: tp.connectionPool.http.http2MaxRequests,
            max_retries: tp.connectionPool.http.maxRetries,
          },
        ],
      },
      upstream_connection_options: {
        tcp_keepalive: { keepalive_time: parseInt(tp.connectionPool.tcp.tcpKeepalive.time, 10), keepalive_interval: parseInt(tp.connectionPool.tcp.tcpKeepalive.interval, 10) },
      },
      outlier_detection: {
        split_external_local_origin_errors: od.splitExternalLocalOriginErrors,
        consecutive_local_origin_failure: od.consecutiveLocalOriginFailures,
        interval: od.interval,
        base_ejection_time: od.baseEjectionTime,
        max_ejection_percent: od.maxEjectionPercent,
      },
      common_lb_config: { healthy_panic_threshold: { value: od.minHealthPercent } },
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          explicit_http_config: { http2_protocol_options: {} },
        },
      },
    };
  }

  it("the EnvoyFilter's Envoy config (listener, ext_proc, virtual host, and the DestinationRule's processor cluster) passes envoy --mode validate", async () => {
    await validateEnvoyConfig(assembledBootstrap());
  });

  it('that validation is not vacuous: Envoy rejects a broken ext_proc patch', async () => {
    await assert.rejects(
      validateEnvoyConfig(
        assembledBootstrap((f) => {
          f.typed_config.processing_mode.request_body_mode = 'BUFFERED_EVERYTHING';
        }),
      ),
      /BUFFERED_EVERYTHING|request_body_mode|Unable to parse/,
    );
  });
});

// ------------------------------------------------------------------------------------------------
// Only Envoy can reach the processor's ext_proc port
//
// The processor trusts every header it is handed over ext_proc (x-forwarded-client-cert, routing
// headers), because Envoy sanitises them first. Anyone else who could open an ext_proc stream
// could forge an identity. Each function below returns why something other than Envoy could reach
// the port in one deployment ([] = nothing could); the tests run it on the committed manifests and
// on broken copies, which it must reject.

/** A compose `ports` entry as { hostIp, target } (short "[IP:]HOST:CONTAINER" or long syntax). */
function composePort(entry: J): { hostIp: string | undefined; target: number } {
  if (typeof entry === 'object') return { hostIp: entry.host_ip, target: Number(entry.target) };
  const parts = String(entry).split('/')[0]!.split(':');
  return { hostIp: parts.length === 3 ? parts[0] : undefined, target: Number(parts.at(-1)) };
}

/** compose: the processor shares Envoy's network namespace and binds ext_proc on its loopback. */
function composeExposure(compose: J, config: Config): string[] {
  const problems: string[] = [];
  const { envoy, processor } = compose.services;
  if (processor.network_mode !== 'service:envoy') problems.push(`processor: network_mode ${processor.network_mode}, not Envoy's namespace`);
  const bind = grpcBindAddress(config, processor.command ?? []);
  if (!isLoopback(hostPort(bind).host)) problems.push(`processor binds ext_proc on ${bind}, not loopback`);
  const closed = [hostPort(bind).port, hostPort(config.gateway.envoy_admin).port];
  for (const [name, svc] of [['envoy', envoy], ['processor', processor]] as const) {
    for (const entry of (svc.ports ?? []) as J[]) {
      const { hostIp, target } = composePort(entry);
      if (closed.includes(target)) problems.push(`${name} publishes port ${target} (ext_proc or Envoy admin)`);
      if (hostIp !== '127.0.0.1') problems.push(`${name} publishes port ${target} beyond the host's loopback`);
    }
  }
  return problems;
}

/** Kubernetes: ext_proc on the Pod's loopback, declared and exposed nowhere, closed by a NetworkPolicy. */
function kubernetesExposure(objects: J[], config: Config): string[] {
  const problems: string[] = [];
  const gateway = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'mcp-gateway');
  const spec = gateway.spec.template.spec;
  const labels = gateway.spec.template.metadata.labels as Record<string, string>;
  const containers = spec.containers as J[];
  const proc = containers.find((c) => c.name === 'processor');
  const bind = grpcBindAddress(config, [...(proc.command ?? []), ...(proc.args ?? [])]);
  const grpc = hostPort(bind).port;
  const closed = [grpc, hostPort(config.gateway.envoy_admin).port];
  if (!isLoopback(hostPort(bind).host)) problems.push(`processor binds ext_proc on ${bind}, not loopback`);
  if (spec.hostNetwork === true) problems.push("hostNetwork: the Pod's loopback would be the node's");
  const resolve = (port: number | string): number | undefined =>
    typeof port === 'number' ? port : containers.flatMap((c) => (c.ports ?? []) as J[]).find((p) => p.name === port)?.containerPort;
  for (const c of containers) {
    for (const p of (c.ports ?? []) as J[]) {
      if (closed.includes(p.containerPort) || p.hostPort !== undefined) problems.push(`${c.name} declares port ${p.containerPort}`);
    }
  }
  for (const svc of objects.filter((o) => o.kind === 'Service' && o.spec.selector !== undefined && matches(o.spec.selector, labels))) {
    for (const p of svc.spec.ports as J[]) {
      const target = resolve(p.targetPort ?? p.port);
      if (target === undefined || closed.includes(target)) problems.push(`Service ${svc.metadata.name} exposes port ${p.targetPort ?? p.port}`);
    }
  }
  const policies = objects.filter(
    (o) => o.kind === 'NetworkPolicy' && matches(o.spec.podSelector.matchLabels ?? {}, labels) && (o.spec.policyTypes as string[]).includes('Ingress'),
  );
  if (policies.length === 0) problems.push('no NetworkPolicy limits ingress to the gateway Pods');
  for (const np of policies) {
    for (const rule of (np.spec.ingress ?? []) as J[]) {
      if (rule.ports === undefined) problems.push(`NetworkPolicy ${np.metadata.name} admits every port`);
      for (const p of (rule.ports ?? []) as J[]) {
        const from = p.port === undefined ? undefined : resolve(p.port);
        if (p.port === undefined) problems.push(`NetworkPolicy ${np.metadata.name} admits every port`);
        else if (from === undefined) problems.push(`NetworkPolicy ${np.metadata.name}: port ${p.port} is not a container port`);
        else if (closed.some((c) => c >= from && c <= (p.endPort ?? from))) problems.push(`NetworkPolicy ${np.metadata.name} admits port ${p.port}`);
      }
    }
  }
  return problems;
}

/** The sources an Istio AuthorizationPolicy rule may name for the ext_proc port: one principal, nothing else. */
const PRINCIPAL = /^[^/*]+\/ns\/([^/*]+)\/sa\/[^/*]+$/;

/**
 * Istio: the ingress gateway calls the processor over Istio mTLS (Istio's own cluster for the
 * processor Service, tls ISTIO_MUTUAL), the processor's sidecar intercepts the ext_proc port and
 * accepts only mTLS (PeerAuthentication STRICT), only the gateway's principal may call that port
 * (AuthorizationPolicy), and only the gateway Pods may connect to it (NetworkPolicy).
 */
function istioExposure(objects: J[], config: Config): string[] {
  const problems: string[] = [];
  const all = (kind: string): J[] => objects.filter((o) => o.kind === kind);
  const filter = all('EnvoyFilter').find((f) => f.metadata.name === 'mcp-gateway-ext-proc');
  const gatewayNs = filter.metadata.namespace as string;
  const gatewayLabels = filter.spec.workloadSelector.labels as Record<string, string>;
  const processor = all('Deployment').find((d) => d.metadata.name === 'mcp-gateway-processor');
  const ns = processor.metadata.namespace as string;
  const pod = processor.spec.template;
  const podLabels = pod.metadata.labels as Record<string, string>;
  const container = pod.spec.containers[0];
  const grpc = hostPort(grpcBindAddress(config, [...(container.command ?? []), ...(container.args ?? [])])).port;
  const appliesToPod = (o: J): boolean =>
    (o.metadata.namespace === ns && (o.spec.selector === undefined || matches(o.spec.selector.matchLabels ?? {}, podLabels))) ||
    (o.metadata.namespace === 'istio-system' && o.spec.selector === undefined); // mesh-wide (root namespace)

  // 1. ext_proc calls Istio's cluster for the processor Service, over Istio mTLS.
  const extProc = (filter.spec.configPatches as J[]).find((p) => p.applyTo === 'HTTP_FILTER').patch.value.typed_config;
  const clusterName = extProc.grpc_service.envoy_grpc?.cluster_name as string | undefined;
  const m = /^outbound\|(\d+)\|\|(.+)$/.exec(clusterName ?? '');
  if (m === null) {
    problems.push(`ext_proc calls ${clusterName ?? 'a google_grpc target'}, not Istio's cluster of the processor Service (no Istio mTLS)`);
  } else {
    const [, port, host] = m;
    if ((filter.spec.configPatches as J[]).some((p) => p.applyTo === 'CLUSTER' && p.patch.value?.name === clusterName)) {
      problems.push(`the EnvoyFilter replaces Istio's cluster ${clusterName} with its own`);
    }
    const svc = all('Service').find((s) => `${s.metadata.name}.${s.metadata.namespace}.svc.cluster.local` === host);
    const svcPort = (svc?.spec.ports as J[] | undefined)?.find((p) => String(p.port) === port);
    if (svc === undefined || svcPort === undefined) problems.push(`no Service port behind ${clusterName}`);
    else {
      if (svc.spec.clusterIP === 'None') problems.push(`Service ${svc.metadata.name} is headless: Istio gives it a passthrough cluster`);
      if (!matches(svc.spec.selector ?? {}, podLabels) || portByName(container, svcPort.targetPort) !== grpc) {
        problems.push(`${clusterName} does not lead to the processor's ext_proc port ${grpc}`);
      }
    }
    const rules = all('DestinationRule').filter((d) => d.spec.host === host);
    if (rules.length !== 1) problems.push(`expected one DestinationRule for ${host}, found ${rules.length}`);
    for (const dr of rules) {
      const modes = [dr.spec.trafficPolicy?.tls?.mode, ...((dr.spec.trafficPolicy?.portLevelSettings ?? []) as J[]).filter((s) => String(s.port?.number) === port).map((s) => s.tls?.mode)];
      if (modes[0] !== 'ISTIO_MUTUAL' || modes.some((x) => x !== undefined && x !== 'ISTIO_MUTUAL')) problems.push(`DestinationRule ${dr.metadata.name}: tls is not ISTIO_MUTUAL`);
      const exportTo = dr.spec.exportTo as string[] | undefined;
      if (exportTo !== undefined && !exportTo.includes('*') && !exportTo.includes(gatewayNs)) problems.push(`DestinationRule ${dr.metadata.name} is not exported to ${gatewayNs}`);
    }
  }

  // 2. The sidecar intercepts the ext_proc port.
  const nsObj = all('Namespace').find((n) => n.metadata.name === ns);
  const inject = pod.metadata.labels?.['sidecar.istio.io/inject'] ?? pod.metadata.annotations?.['sidecar.istio.io/inject'];
  if (inject === 'false' || (inject !== 'true' && nsObj?.metadata.labels?.['istio-injection'] !== 'enabled')) problems.push('the processor Pods get no Istio sidecar');
  const portList = (key: string): string[] | undefined => (pod.metadata.annotations?.[key] as string | undefined)?.split(',').map((x) => x.trim());
  if (portList('traffic.sidecar.istio.io/excludeInboundPorts')?.includes(String(grpc))) problems.push(`port ${grpc} is excluded from the sidecar`);
  const include = portList('traffic.sidecar.istio.io/includeInboundPorts');
  if (include !== undefined && !include.includes('*') && !include.includes(String(grpc))) problems.push(`port ${grpc} is not intercepted by the sidecar`);

  // 3. The sidecar accepts only mTLS on it.
  const peerAuth = all('PeerAuthentication').filter((o) => o.metadata.namespace === ns && o.spec.selector !== undefined && matches(o.spec.selector.matchLabels, podLabels));
  if (peerAuth.length !== 1) problems.push(`expected one PeerAuthentication for the processor Pods, found ${peerAuth.length}`);
  for (const pa of peerAuth) {
    const mode = pa.spec.portLevelMtls?.[String(grpc)]?.mode ?? pa.spec.mtls?.mode;
    if (mode !== 'STRICT') problems.push(`PeerAuthentication ${pa.metadata.name}: port ${grpc} is ${mode ?? 'not set'}, not STRICT`);
  }

  // 4. Only the ingress gateway's principal may call it.
  const allow = all('AuthorizationPolicy').filter((o) => appliesToPod(o) && (o.spec.action ?? 'ALLOW') === 'ALLOW');
  if (allow.length === 0) problems.push('no ALLOW AuthorizationPolicy selects the processor Pods: every caller is allowed');
  const reachesGrpc = (rule: J): boolean =>
    rule.to === undefined ||
    (rule.to as J[]).some((t) => {
      const op = t.operation ?? {};
      if (op.ports !== undefined) return (op.ports as J[]).map(String).includes(String(grpc));
      if (op.notPorts !== undefined) return !(op.notPorts as J[]).map(String).includes(String(grpc));
      return true;
    });
  for (const ap of allow) {
    for (const rule of (ap.spec.rules ?? []) as J[]) {
      if (!reachesGrpc(rule)) continue;
      const sources = (rule.from ?? []) as J[];
      if (sources.length === 0) problems.push(`AuthorizationPolicy ${ap.metadata.name} lets any caller reach port ${grpc}`);
      for (const { source } of sources) {
        const keys = Object.keys(source ?? {});
        const principals = (source?.principals ?? []) as string[];
        const gatewayPrincipal = principals.length === 1 && PRINCIPAL.exec(principals[0]!)?.[1] === gatewayNs;
        if (keys.length !== 1 || keys[0] !== 'principals' || !gatewayPrincipal) {
          problems.push(`AuthorizationPolicy ${ap.metadata.name} lets ${JSON.stringify(source)} reach port ${grpc}, not only one ${gatewayNs} service account`);
        }
      }
    }
  }
  const principals = new Set(allow.flatMap((ap) => ((ap.spec.rules ?? []) as J[]).filter(reachesGrpc).flatMap((r) => ((r.from ?? []) as J[]).flatMap((f) => f.source?.principals ?? []))));
  if (principals.size > 1) problems.push(`port ${grpc} is open to several principals: ${[...principals].join(', ')}`);

  // 5. Only the ingress gateway Pods may connect to it.
  const netpols = all('NetworkPolicy').filter(
    (o) => o.metadata.namespace === ns && matches(o.spec.podSelector.matchLabels ?? {}, podLabels) && (o.spec.policyTypes as string[]).includes('Ingress'),
  );
  if (netpols.length === 0) problems.push('no NetworkPolicy limits ingress to the processor Pods');
  const gatewayPeer = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': gatewayNs } }, podSelector: { matchLabels: gatewayLabels } };
  for (const np of netpols) {
    for (const rule of (np.spec.ingress ?? []) as J[]) {
      const ports = rule.ports as J[] | undefined;
      const covers = ports === undefined || ports.some((p) => p.port === undefined || (typeof p.port === 'number' ? grpc >= p.port && grpc <= (p.endPort ?? p.port) : portByName(container, p.port) === grpc));
      if (!covers) continue;
      const from = (rule.from ?? []) as J[];
      if (from.length === 0 || from.some((peer) => !isDeepStrictEqual(peer, gatewayPeer))) {
        problems.push(`NetworkPolicy ${np.metadata.name} admits ${from.length === 0 ? 'anyone' : JSON.stringify(from)} to port ${grpc}`);
      }
    }
  }
  return problems;
}

describe("only Envoy can reach the processor's ext_proc port", () => {
  const compose = composeFile();
  const composeConfig = gatewayConfig(read(join(COMPOSE, 'gateway.yaml')), 'deploy/compose/gateway.yaml');
  const k8s = kustomizationObjects(K8S);
  const k8sConfig = gatewayConfig(read(join(K8S, 'gateway.yaml')), 'deploy/kubernetes/gateway.yaml');
  const istio = kustomizationObjects(ISTIO);
  const istioConfig = gatewayConfig(
    istio.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'mcp-gateway-processor').data['gateway.yaml'],
    'deploy/istio/processor-config.yaml (gateway.yaml)',
  );
  const edit = <T>(value: T, change: (copy: T) => void): T => {
    const copy = structuredClone(value);
    change(copy);
    return copy;
  };
  const k8sGateway = (objs: J[]): J => objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'mcp-gateway').spec.template;
  const istioPod = (objs: J[]): J => objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'mcp-gateway-processor').spec.template;
  const istioOne = (objs: J[], kind: string): J => objs.find((o) => o.kind === kind && o.metadata.name === 'mcp-gateway-processor');

  it('compose: the processor binds ext_proc on the loopback it shares with Envoy; nothing publishes it', () => {
    assert.deepEqual(composeExposure(compose, composeConfig), []);
  });

  it('Kubernetes: ext_proc on the Pod loopback, no containerPort, no Service, closed by the NetworkPolicy', () => {
    assert.deepEqual(kubernetesExposure(k8s, k8sConfig), []);
  });

  it('Istio: mTLS from the ingress gateway only (DestinationRule, PeerAuthentication, AuthorizationPolicy, NetworkPolicy)', () => {
    assert.deepEqual(istioExposure(istio, istioConfig), []);
  });

  const broken: Array<[string, () => string[], RegExp]> = [
    ['compose: gateway.processor on 0.0.0.0', () => composeExposure(compose, withProcessor(composeConfig, '0.0.0.0:9001')), /not loopback/],
    ['compose: serve --grpc 0.0.0.0:9001', () => composeExposure(edit(compose, (c) => c.services.processor.command.push('--grpc', '0.0.0.0:9001')), composeConfig), /not loopback/],
    ['compose: own network namespace', () => composeExposure(edit(compose, (c) => delete c.services.processor.network_mode), composeConfig), /network_mode/],
    ['compose: ext_proc port published', () => composeExposure(edit(compose, (c) => c.services.envoy.ports.push('127.0.0.1:9001:9001')), composeConfig), /publishes port 9001/],
    ['compose: admin published on every host address', () => composeExposure(edit(compose, (c) => (c.services.envoy.ports[1] = '9090:9090')), composeConfig), /beyond the host's loopback/],
    ['Kubernetes: gateway.processor on 0.0.0.0', () => kubernetesExposure(k8s, withProcessor(k8sConfig, '0.0.0.0:9001')), /not loopback/],
    [
      'Kubernetes: serve --grpc=0.0.0.0:9001',
      () => kubernetesExposure(edit(k8s, (o) => k8sGateway(o).spec.containers.find((c: J) => c.name === 'processor').args.push('--grpc=0.0.0.0:9001')), k8sConfig),
      /not loopback/,
    ],
    ['Kubernetes: hostNetwork', () => kubernetesExposure(edit(k8s, (o) => (k8sGateway(o).spec.hostNetwork = true)), k8sConfig), /hostNetwork/],
    [
      'Kubernetes: a Service for the ext_proc port',
      () => kubernetesExposure(edit(k8s, (o) => o.find((x: J) => x.kind === 'Service' && x.metadata.name === 'mcp-gateway-admin').spec.ports.push({ name: 'grpc', port: 9001, targetPort: 9001 })), k8sConfig),
      /exposes port 9001/,
    ],
    [
      'Kubernetes: NetworkPolicy admitting every port',
      () => kubernetesExposure(edit(k8s, (o) => delete o.find((x: J) => x.kind === 'NetworkPolicy' && x.metadata.name === 'mcp-gateway').spec.ingress[0].ports), k8sConfig),
      /admits every port/,
    ],
    ['Kubernetes: no NetworkPolicy', () => kubernetesExposure(k8s.filter((o) => !(o.kind === 'NetworkPolicy' && o.metadata.name === 'mcp-gateway')), k8sConfig), /no NetworkPolicy/],
    [
      'Istio: ext_proc port excluded from the sidecar',
      () => istioExposure(edit(istio, (o) => (istioPod(o).metadata.annotations['traffic.sidecar.istio.io/excludeInboundPorts'] = '9001')), istioConfig),
      /excluded from the sidecar/,
    ],
    ['Istio: sidecar injection off', () => istioExposure(edit(istio, (o) => (istioPod(o).metadata.labels['sidecar.istio.io/inject'] = 'false')), istioConfig), /no Istio sidecar/],
    [
      'Istio: a plain cluster of our own',
      () =>
        istioExposure(
          edit(istio, (o) => {
            o.find((x: J) => x.kind === 'EnvoyFilter').spec.configPatches.find((p: J) => p.applyTo === 'HTTP_FILTER').patch.value.typed_config.grpc_service.envoy_grpc.cluster_name = 'mcpgw_processor';
          }),
          istioConfig,
        ),
      /not Istio's cluster/,
    ],
    ['Istio: headless Service', () => istioExposure(edit(istio, (o) => (istioOne(o, 'Service').spec.clusterIP = 'None')), istioConfig), /headless/],
    ['Istio: DestinationRule without mTLS', () => istioExposure(edit(istio, (o) => (istioOne(o, 'DestinationRule').spec.trafficPolicy.tls.mode = 'DISABLE')), istioConfig), /not ISTIO_MUTUAL/],
    ['Istio: PERMISSIVE mTLS', () => istioExposure(edit(istio, (o) => (istioOne(o, 'PeerAuthentication').spec.mtls.mode = 'PERMISSIVE')), istioConfig), /not STRICT/],
    [
      'Istio: PERMISSIVE on the ext_proc port',
      () => istioExposure(edit(istio, (o) => (istioOne(o, 'PeerAuthentication').spec.portLevelMtls['9001'] = { mode: 'PERMISSIVE' })), istioConfig),
      /not STRICT/,
    ],
    ['Istio: no AuthorizationPolicy', () => istioExposure(istio.filter((o) => o.kind !== 'AuthorizationPolicy'), istioConfig), /every caller is allowed/],
    [
      'Istio: a second principal',
      () => istioExposure(edit(istio, (o) => istioOne(o, 'AuthorizationPolicy').spec.rules[0].from[0].source.principals.push('cluster.local/ns/mcp-gateway/sa/default')), istioConfig),
      /not only one istio-system service account/,
    ],
    [
      'Istio: a whole namespace',
      () => istioExposure(edit(istio, (o) => (istioOne(o, 'AuthorizationPolicy').spec.rules[0].from[0].source = { namespaces: ['istio-system'] })), istioConfig),
      /not only one istio-system service account/,
    ],
    ['Istio: the admin rule without a port', () => istioExposure(edit(istio, (o) => delete istioOne(o, 'AuthorizationPolicy').spec.rules[1].to), istioConfig), /lets any caller reach port 9001/],
    ['Istio: a namespace-wide allow-all', () => istioExposure([...istio, { kind: 'AuthorizationPolicy', metadata: { name: 'allow-all', namespace: 'mcp-gateway' }, spec: { rules: [{}] } }], istioConfig), /lets any caller/],
    [
      'Istio: NetworkPolicy admitting anyone to the ext_proc port',
      () => istioExposure(edit(istio, (o) => istioOne(o, 'NetworkPolicy').spec.ingress[1].ports.push({ protocol: 'TCP', port: 9001 })), istioConfig),
      /admits anyone to port 9001/,
    ],
    ['Istio: no NetworkPolicy', () => istioExposure(istio.filter((o) => o.kind !== 'NetworkPolicy'), istioConfig), /no NetworkPolicy/],
  ];
  for (const [what, run, expected] of broken) {
    it(`rejects a broken copy: ${what}`, () => {
      const problems = run();
      assert.ok(problems.some((p) => expected.test(p)), `expected a problem matching ${expected}, got ${JSON.stringify(problems)}`);
    });
  }

  it('Istio: still lets the ingress gateway through (its principal and its Pods on the ext_proc port)', () => {
    const grpc = String(hostPort(grpcBindAddress(istioConfig, istioPod(istio).spec.containers[0].args)).port);
    const filter = istio.find((o) => o.kind === 'EnvoyFilter');
    const rule = (istioOne(istio, 'AuthorizationPolicy').spec.rules as J[]).find((r) => r.to?.[0].operation.ports?.includes(grpc));
    assert.ok(rule !== undefined, `an ALLOW rule for port ${grpc}`);
    assert.match(rule.from[0].source.principals[0], new RegExp(`^cluster\\.local/ns/${filter.metadata.namespace}/sa/istio-ingressgateway-service-account$`));
    const peer = { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': filter.metadata.namespace } }, podSelector: { matchLabels: filter.spec.workloadSelector.labels } };
    assert.ok(
      (istioOne(istio, 'NetworkPolicy').spec.ingress as J[]).some((r) => (r.ports as J[]).some((p) => String(p.port) === grpc) && isDeepStrictEqual(r.from, [peer])),
      'the NetworkPolicy admits the ingress gateway Pods to the ext_proc port',
    );
  });

  it("keeps the processor's admin port reachable for probes and scraping, and Envoy's admin on loopback", () => {
    // compose: published on the host's loopback (the health check runs inside the namespace).
    const published = (compose.services.envoy.ports as J[]).map(composePort);
    assert.ok(published.some((p) => p.target === hostPort(composeConfig.gateway.admin).port && p.hostIp === '127.0.0.1'));
    // Kubernetes: the admin port is the one port besides the client listener that other Pods may open.
    const pod = k8sGateway(k8s);
    assert.equal(pod.metadata.annotations['prometheus.io/port'], String(hostPort(k8sConfig.gateway.admin).port));
    const np = k8s.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'mcp-gateway');
    assert.deepEqual((np.spec.ingress as J[]).flatMap((r) => (r.ports as J[]).map((p) => p.port)).sort(), ['admin', 'mcp']);
    assert.equal(np.spec.ingress[0].from, undefined, 'clients and scrapers may come from anywhere');
    // Istio: the admin port takes plain HTTP from anyone (scrapers outside the mesh), ext_proc does not.
    const admin = String(hostPort(istioConfig.gateway.admin).port);
    assert.equal(istioOne(istio, 'PeerAuthentication').spec.portLevelMtls[admin].mode, 'PERMISSIVE');
    const adminRule = (istioOne(istio, 'AuthorizationPolicy').spec.rules as J[]).find((r) => r.to?.[0].operation.ports?.includes(admin));
    assert.ok(adminRule !== undefined && adminRule.from === undefined, 'any caller may read the admin port');
    assert.ok((istioOne(istio, 'NetworkPolicy').spec.ingress as J[]).some((r) => r.from === undefined && (r.ports as J[]).some((p) => String(p.port) === admin)));
    assert.equal(istioPod(istio).metadata.annotations['prometheus.io/port'], admin);
    for (const cfg of [composeConfig, k8sConfig]) assert.ok(isLoopback(hostPort(cfg.gateway.envoy_admin).host));
  });
});

// The compiled file lives in dist/test/integration; make sure ROOT really is the repository root.
assert.ok(existsSync(join(ROOT, 'package.json')) && existsSync(join(dirname(DEPLOY), 'src')), `bad ROOT ${ROOT}`);
