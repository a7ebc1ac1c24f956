import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BlockedToolsSchema, PoliciesSchema, TenantsSchema } from '../../../src/policy/schema.js';
import { AccessControl, IMPLICIT_TENANT, type AccessDecision } from '../../../src/policy/access.js';
import { Namespace } from '../../../src/aggregated/naming.js';

const SERVERS = ['alpha', 'beta', 'files'];

function control(policies: unknown[] = [], blocked: string[] = [], tenants?: unknown): AccessControl {
  return new AccessControl({
    servers: SERVERS,
    tenants: tenants === undefined ? undefined : TenantsSchema.parse(tenants),
    policies: PoliciesSchema.parse(policies),
    blockedTools: BlockedToolsSchema.parse(blocked),
  });
}

const T = IMPLICIT_TENANT;
const ok = (d: AccessDecision): boolean => d.allowed;

describe('AccessControl: tools', () => {
  it('allows everything when no policy applies', () => {
    const ac = control();
    assert.deepEqual(ac.canUseTool(T, 'alpha', 'anything'), { allowed: true, reason: 'allowed', detail: null });
  });

  it('applies allow globs with * and ?, exact case', () => {
    const ac = control([{ tenant: '*', servers: ['alpha'], tools: { allowed: ['read_*', 'get_?', 'list'] } }]);
    for (const name of ['read_file', 'read_', 'get_x', 'list']) assert.ok(ok(ac.canUseTool(T, 'alpha', name)), name);
    for (const name of ['write_file', 'get_xy', 'get_', 'lists', 'READ_file', 'Read_file']) {
      assert.deepEqual(ac.canUseTool(T, 'alpha', name), { allowed: false, reason: 'not_in_allow_list', detail: null }, name);
    }
    assert.ok(ok(ac.canUseTool(T, 'beta', 'write_file')), 'other servers untouched');
  });

  it('lets deny win over allow and names the rule', () => {
    const ac = control([{ servers: ['*'], tools: { allowed: ['*'], denied: ['*delete*', 'drop_?able'] } }]);
    assert.ok(ok(ac.canUseTool(T, 'alpha', 'create_user')));
    assert.deepEqual(ac.canUseTool(T, 'beta', 'user_delete_all'), {
      allowed: false,
      reason: 'denied_by_policy',
      detail: 'policies[0].tools.denied[0] "*delete*"',
    });
    assert.equal(ac.canUseTool(T, 'beta', 'drop_table').detail, 'policies[0].tools.denied[1] "drop_?able"');
  });

  it('adds up allow lists of all applying policies; an empty allow list allows nothing', () => {
    const ac = control([
      { tenant: '*', servers: ['alpha'], tools: { allowed: ['read_*'] } },
      { tenant: '*', servers: ['a*'], tools: { allowed: ['write_note'] } },
      { tenant: '*', servers: ['beta'], tools: { allowed: [] } },
    ]);
    assert.ok(ok(ac.canUseTool(T, 'alpha', 'read_x')));
    assert.ok(ok(ac.canUseTool(T, 'alpha', 'write_note')));
    assert.ok(!ok(ac.canUseTool(T, 'alpha', 'write_other')));
    assert.ok(!ok(ac.canUseTool(T, 'beta', 'read_x')));
  });

  it('applies the global blocked_tools list, plain or per server', () => {
    const ac = control([{ tools: { allowed: ['*'] } }], ['shell_exec', 'files/write_*', '*/rm_?f']);
    assert.deepEqual(ac.canUseTool(T, 'alpha', 'shell_exec'), { allowed: false, reason: 'blocked', detail: 'blocked_tools[0] "shell_exec"' });
    assert.equal(ac.canUseTool(T, 'files', 'write_file').reason, 'blocked');
    assert.ok(ok(ac.canUseTool(T, 'alpha', 'write_file')), 'server-scoped entry stays on its server');
    assert.equal(ac.canUseTool(T, 'beta', 'rm_rf').reason, 'blocked');
  });

  it('never lets a Unicode, case or encoding variant reach a denied or blocked tool', () => {
    const ac = control([{ tools: { denied: ['echo'] } }], ['exec']);
    const variants = [
      'echo',
      'ECHO',
      'Echo',
      'ｅｃｈｏ', // fullwidth
      'e\u200dcho', // zero-width joiner
      'ec\u200bho', // zero-width space
      '\u202eohce', // right-to-left override
      'echo\u200f', // right-to-left mark
      'e\u0301cho', // combining acute, not NFC
      '\u00e9cho', // precomposed é: NFC, but folds onto echo
      'ech\u03bf', // Greek omicron mixed with Latin
      '\u0435cho', // Cyrillic ie mixed with Latin
      'echo\u0000',
      'echo ',
      ' echo',
      'echo\n',
      '\ufeffecho', // byte-order mark
      'ｅcho',
      'ℯcho', // script small e (compatibility form)
      'echo\ufe0f', // variation selector
      '𝐞𝐜𝐡𝐨', // mathematical bold
      'ＥＣＨＯ',
      'EXEC',
      'ｅｘｅｃ',
      'e\u00adxec', // soft hyphen
    ];
    for (const v of variants) {
      const d = ac.canUseTool(T, 'alpha', v);
      assert.equal(d.allowed, false, `${JSON.stringify(v)} must not be usable`);
    }
    assert.ok(ok(ac.canUseTool(T, 'alpha', 'echo2')));
    assert.ok(ok(ac.canUseTool(T, 'alpha', 'executor')));
  });

  it('runs on the upstream name, so the aggregated prefix cannot smuggle a denied tool', () => {
    const ac = control([{ servers: ['alpha'], tools: { denied: ['secret_*'] } }]);
    const ns = new Namespace(SERVERS, '__');
    for (const requested of ['alpha__secret_x', 'alpha__SECRET_x', 'alpha__ｓecret_x']) {
      const owned = ns.parseName(requested);
      assert.ok(owned !== null);
      assert.equal(ac.canUseTool(T, owned.server, owned.name).allowed, false, requested);
    }
    // Another server's identically named tool is a different tool.
    assert.ok(ok(ac.canUseTool(T, 'beta', 'secret_x')));
  });

  it('refuses suspicious names even where no rule applies (they are hidden from lists)', () => {
    const ac = control();
    assert.deepEqual(ac.canUseTool(T, 'alpha', 'to\u202eol'), { allowed: false, reason: 'suspicious_name', detail: 'invisible_or_control' });
    assert.equal(ac.canUseTool(T, 'alpha', '').detail, 'empty');
    assert.equal(ac.canUseTool(T, 'alpha', 'x'.repeat(300)).detail, 'too_long');
    assert.ok(ok(ac.canUseTool(T, 'alpha', 'données')), 'single-script accented names are fine');
    assert.ok(ok(ac.canUseTool(T, 'alpha', 'инструмент')), 'single-script Cyrillic is fine');
  });
});

describe('AccessControl: prompts, servers and tenants', () => {
  const tenants = {
    acme: { servers: ['alpha', 'files'], namespace: 'acme' },
    beta: { servers: ['b*'], namespace: 'beta-ns' },
  };

  it('limits tenants to their servers and refuses unknown tenants and servers', () => {
    const ac = control([], [], tenants);
    assert.ok(ok(ac.canUseServer('acme', 'alpha')));
    assert.equal(ac.canUseServer('acme', 'beta').reason, 'server_not_in_tenant');
    assert.ok(ok(ac.canUseServer('beta', 'beta')));
    assert.equal(ac.canUseServer('nobody', 'alpha').reason, 'unknown_tenant');
    assert.equal(ac.canUseServer('acme', 'ghost').reason, 'unknown_server');
    assert.equal(ac.canUseTool('acme', 'beta', 'x').reason, 'server_not_in_tenant');
    assert.equal(ac.canUseResource('beta', 'alpha', 'file:///x').reason, 'server_not_in_tenant');
    assert.equal(ac.canUseServer(IMPLICIT_TENANT, 'alpha').reason, 'unknown_tenant', 'no implicit tenant once tenants exist');
  });

  it('applies tenant-specific and * policies', () => {
    const ac = control(
      [
        { tenant: 'acme', servers: ['files'], tools: { denied: ['write_*'] } },
        { tenant: '*', tools: { denied: ['admin_*'] } },
      ],
      [],
      tenants,
    );
    assert.equal(ac.canUseTool('acme', 'files', 'write_x').reason, 'denied_by_policy');
    assert.ok(ok(ac.canUseTool('acme', 'alpha', 'write_x')));
    assert.equal(ac.canUseTool('beta', 'beta', 'admin_reset').reason, 'denied_by_policy');
    assert.ok(ok(ac.canUseTool('beta', 'beta', 'write_x')));
  });

  it('checks prompts with their own rules (blocked_tools is for tools)', () => {
    const ac = control([{ prompts: { allowed: ['summar*'], denied: ['*internal*'] } }], ['summarize']);
    assert.ok(ok(ac.canUsePrompt(T, 'alpha', 'summarize')));
    assert.equal(ac.canUsePrompt(T, 'alpha', 'summary_internal').reason, 'denied_by_policy');
    assert.equal(ac.canUsePrompt(T, 'alpha', 'translate').reason, 'not_in_allow_list');
    assert.equal(ac.canUsePrompt(T, 'alpha', 'ｓummarize').reason, 'suspicious_name');
  });
});

describe('AccessControl: resources', () => {
  const ac = control([
    {
      servers: ['files'],
      resources: { allowed: ['file:///srv/public/*', 'https://Docs.Example.com/*', 'memo://notes?id=*'], denied: ['file:///srv/public/secret*'] },
    },
  ]);

  it('allows only matching URIs, deny winning', () => {
    assert.ok(ok(ac.canUseResource(T, 'files', 'file:///srv/public/readme.md')));
    assert.ok(ok(ac.canUseResource(T, 'files', 'FILE:///srv/public/readme.md')), 'scheme is case-insensitive');
    assert.ok(ok(ac.canUseResource(T, 'files', 'https://docs.example.COM/a')), 'host is case-insensitive');
    assert.ok(ok(ac.canUseResource(T, 'files', 'memo://notes?id=7')), '? is literal in URI patterns');
    assert.equal(ac.canUseResource(T, 'files', 'memo://notesXid=7').reason, 'not_in_allow_list');
    assert.equal(ac.canUseResource(T, 'files', 'file:///etc/passwd').reason, 'not_in_allow_list');
    assert.equal(ac.canUseResource(T, 'files', 'file:///srv/public/secrets.txt').reason, 'denied_by_policy');
    assert.ok(ok(ac.canUseResource(T, 'alpha', 'file:///etc/passwd')), 'no resource rule on alpha');
  });

  it('defeats encoding, case, traversal and slash tricks', () => {
    const tricks: [string, string][] = [
      ['file:///srv/public/../../etc/passwd', 'suspicious_uri'],
      ['file:///srv/public/%2e%2e/%2E%2E/etc/passwd', 'suspicious_uri'],
      ['file:///srv/public/.%2e/x', 'suspicious_uri'],
      ['file:///srv/public/..;/x', 'suspicious_uri'],
      ['file:///srv/public/./secret.txt', 'suspicious_uri'],
      ['file:///srv/public%2F..%2Fsecret', 'suspicious_uri'],
      ['file:///srv/public/%252e%252e/x', 'suspicious_uri'],
      ['file:///srv/public\\..\\x', 'suspicious_uri'],
      ['file:///srv/public/%00x', 'suspicious_uri'],
      ['file:///srv/public/%E2%80%AEtxt.exe', 'suspicious_uri'],
      ['file:///srv/public/%EF%BC%8Fx', 'suspicious_uri'],
      ['file:///srv/public/%zz', 'suspicious_uri'],
      ['file:///srv/public/\u202ex', 'suspicious_uri'],
      ['file:///srv/public/ｓecret', 'suspicious_uri'],
      ['file:///srv/public/%73ecret.txt', 'denied_by_policy'],
      ['file:///srv/public/SECRET.txt', 'denied_by_policy'],
      ['file:///srv/public//secret.txt', 'denied_by_policy'],
      ['file:///srv//public/secret.txt', 'denied_by_policy'],
      ['file:///srv/%70ublic/../x', 'suspicious_uri'],
    ];
    for (const [uri, reason] of tricks) {
      const d = ac.canUseResource(T, 'files', uri);
      assert.equal(d.allowed, false, uri);
      assert.equal(d.reason, reason, uri);
    }
    assert.ok(ok(ac.canUseResource(T, 'files', 'file:///srv/public/%70lan.md')), 'escaped unreserved chars are just letters');
    assert.ok(ok(ac.canUseResource(T, 'files', 'file:///srv/public/my%20notes.md')));
  });

  it('refuses invisible characters in URIs and templates everywhere', () => {
    assert.equal(ac.canUseResource(T, 'alpha', 'file:///x\u200b').reason, 'suspicious_uri');
    assert.ok(ok(ac.canListResourceTemplate(T, 'files', 'file:///srv/{path}')));
    assert.equal(ac.canListResourceTemplate(T, 'files', 'file:///\u202e{path}').reason, 'suspicious_uri');
  });
});
