import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildResourceMetadata,
  ProtectedResource,
  requestTarget,
  resourceMetadataUrl,
  wwwAuthenticate,
} from '../../../src/auth/resource-metadata.js';
import { OAuthResourceSchema } from '../../../src/auth/schema.js';

const OAUTH = OAuthResourceSchema.parse({
  resource: 'https://mcp.example.com/mcp',
  authorization_servers: ['https://auth.example.com'],
  scopes_supported: ['mcp:tools'],
});

describe('protected-resource metadata (RFC 9728)', () => {
  it('builds the document', () => {
    assert.deepEqual(buildResourceMetadata(OAUTH), {
      resource: 'https://mcp.example.com/mcp',
      authorization_servers: ['https://auth.example.com'],
      bearer_methods_supported: ['header'],
      scopes_supported: ['mcp:tools'],
    });
    const minimal = OAuthResourceSchema.parse({ resource: 'https://mcp.example.com', authorization_servers: ['https://a.example.com'] });
    assert.equal('scopes_supported' in buildResourceMetadata(minimal), false);
  });

  it('inserts the well-known prefix between host and path', () => {
    assert.equal(resourceMetadataUrl('https://mcp.example.com/mcp'), 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp');
    assert.equal(resourceMetadataUrl('https://mcp.example.com/'), 'https://mcp.example.com/.well-known/oauth-protected-resource');
    assert.equal(resourceMetadataUrl('https://mcp.example.com'), 'https://mcp.example.com/.well-known/oauth-protected-resource');
    assert.equal(resourceMetadataUrl('https://mcp.example.com:8443/a/b/'), 'https://mcp.example.com:8443/.well-known/oauth-protected-resource/a/b');
  });

  it('answers the root and path-suffixed well-known paths, nothing else', () => {
    const pr = new ProtectedResource(OAUTH, ['/servers/db/mcp']);
    for (const path of [
      '/.well-known/oauth-protected-resource',
      '/.well-known/oauth-protected-resource/mcp',
      '/.well-known/oauth-protected-resource/servers/db/mcp',
    ]) {
      const r = pr.respond(path, 'GET');
      assert.equal(r?.status, 200, path);
      assert.equal(r?.headers['content-type'], 'application/json');
      assert.equal(JSON.parse(r?.body ?? '').resource, 'https://mcp.example.com/mcp');
    }
    assert.equal(pr.respond('/.well-known/oauth-protected-resource/other', 'GET'), null);
    assert.equal(pr.respond('/mcp', 'GET'), null);
    assert.equal(pr.respond('/.well-known/oauth-protected-resource', 'POST')?.status, 405);
    assert.equal(pr.respond('/.well-known/oauth-protected-resource', 'HEAD')?.body, '');
  });

  it('without a configured resource, describes the URL each request used, with the issuers as authorization servers', () => {
    const pr = new ProtectedResource({ authorization_servers: ['https://idp.example.com'] }, ['/mcp', '/servers/db/mcp']);
    const doc = (path: string, origin: string | null): unknown => {
      const r = pr.respond(path, 'GET', origin);
      return r === null ? null : JSON.parse(r.body);
    };
    assert.deepEqual(doc('/.well-known/oauth-protected-resource', 'https://gw.example.com'), {
      resource: 'https://gw.example.com/mcp',
      authorization_servers: ['https://idp.example.com'],
      bearer_methods_supported: ['header'],
    });
    assert.equal((doc('/.well-known/oauth-protected-resource/servers/db/mcp', 'http://127.0.0.1:8080') as { resource: string }).resource, 'http://127.0.0.1:8080/servers/db/mcp');
    assert.equal(doc('/.well-known/oauth-protected-resource/other', 'https://gw.example.com'), null);
    assert.equal(doc('/.well-known/oauth-protected-resource', null), null, 'a request that names no usable origin gets none');
    const at = (path: string, headers: Record<string, string>): string => pr.challenge({}, requestTarget(new Map(Object.entries({ ':path': path, ...headers }))));
    assert.equal(
      at('/servers/db/mcp?x=1', { ':scheme': 'http', ':authority': 'gw.example.com:8080', 'x-forwarded-proto': 'https' }),
      'Bearer resource_metadata="https://gw.example.com:8080/.well-known/oauth-protected-resource/servers/db/mcp"',
    );
    assert.equal(at('/elsewhere', { ':scheme': 'http', ':authority': 'GW.example.com' }), 'Bearer resource_metadata="http://gw.example.com/.well-known/oauth-protected-resource/mcp"');
    // A Host that is not an authority names no metadata rather than a forged URL.
    assert.equal(at('/mcp', { ':scheme': 'https', ':authority': 'evil.example/x?' }), 'Bearer');
    assert.equal(at('/mcp', { ':scheme': 'javascript', ':authority': 'gw.example.com' }), 'Bearer');
    assert.equal(pr.challenge(), 'Bearer');
  });

  it('builds WWW-Authenticate challenges', () => {
    const pr = new ProtectedResource(OAUTH);
    assert.equal(pr.challenge(), 'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"');
    assert.equal(
      pr.challenge({ error: 'invalid_token', description: 'The access token expired' }),
      'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", error="invalid_token", error_description="The access token expired"',
    );
    assert.equal(wwwAuthenticate(), 'Bearer');
    assert.equal(wwwAuthenticate({ error: 'insufficient_scope', scope: 'a b' }), 'Bearer error="insufficient_scope", scope="a b"');
    assert.equal(wwwAuthenticate({ description: 'say "hi"\\\r\n' }), 'Bearer error_description="say hi"');
  });
});
