import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildResourceMetadata,
  ProtectedResource,
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
