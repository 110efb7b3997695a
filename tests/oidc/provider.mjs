// The OpenID provider the OAuth tests sign in with: panva's `oidc-provider` (pinned in package.json), configured
// small. Nothing here issues or checks a token by hand: the library does all of it.
//
// Read from the environment (tests/oidc_provider.py sets them):
//   OIDC_PORT       the loopback port to listen on; the issuer is http://127.0.0.1:<port>
//   OIDC_JWKS       a file holding the private JWKS to sign with (the first key signs; the others are published)
//   OIDC_RESOURCES  comma-separated resource indicators (RFC 8707) tokens may be issued for
//
// What it serves beside the standard endpoints:
//   /interaction/:uid          a plain login form (users alice and bob, passwords below), then a consent form
//   /test/requests             what it was asked so far: a count per path, and the Authorization headers that
//                              reached discovery and the key set (there must never be one)
// One public client for the code flow with PKCE (`fal-mcp-test`), a second one whose tokens are opaque
// (`fal-mcp-opaque`), a confidential resource-server client that may introspect (`fal-mcp-resource`), and dynamic
// client registration for the MCP SDK's own client. Access tokens for a resource are JWTs (RFC 9068) with the
// scopes `fal:use` and `fal:extra` on offer.
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

// stdout carries one line, the announcement below (the test reads it, then closes the pipe): the library's notices
// go to stderr with everything else.
console.log = console.error;
console.info = console.error;

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = JSON.parse(readFileSync(process.env.OIDC_JWKS, 'utf8'));
const resources = new Set((process.env.OIDC_RESOURCES || '').split(',').filter(Boolean));

export const USERS = {
  alice: { password: 'alice-password', email: 'alice@example.com' },
  bob: { password: 'bob-password', email: 'bob@example.com' },
};
const RESOURCE_SCOPES = 'fal:use fal:extra';
const REDIRECT = 'http://127.0.0.1:9/callback'; // never reached: the tests read the redirect's Location

const requests = { counts: {}, authorization: [] };

const provider = new Provider(issuer, {
  jwks,
  clients: [
    {
      client_id: 'fal-mcp-test',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    {
      client_id: 'fal-mcp-opaque',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      client_id: 'fal-mcp-resource',
      client_secret: 'fal-mcp-resource-secret-0123456789',
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: [],
      grant_types: [],
      response_types: [],
    },
  ],
  async findAccount(_ctx, id) {
    if (!(id in USERS)) return undefined;
    return { accountId: id, async claims() { return { sub: id, email: USERS[id].email }; } };
  },
  claims: { openid: ['sub'], email: ['email'] },
  scopes: ['openid', 'offline_access', 'email', 'fal:use', 'fal:extra'],
  cookies: { keys: ['fal-mcp-test-cookie-key-0123456789'] },
  pkce: { required: () => true },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (_ctx, client) => client.clientId === 'fal-mcp-resource',
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator, client) => {
        if (!resources.has(indicator)) throw new errors.InvalidTarget();
        return {
          scope: RESOURCE_SCOPES,
          audience: indicator,
          accessTokenTTL: 3600,
          accessTokenFormat: client.clientId === 'fal-mcp-opaque' ? 'opaque' : 'jwt',
        };
      },
    },
  },
});

const page = (title, body) => `<!doctype html><html><head><title>${title}</title></head><body>${body}</body></html>`;

provider.use(async (ctx, next) => {
  const path = ctx.path;
  requests.counts[path] = (requests.counts[path] || 0) + 1;
  if (path.startsWith('/.well-known/') || path === '/jwks') {
    const authorization = ctx.get('authorization');
    if (authorization) requests.authorization.push(`${path}: ${authorization}`);
  }
  if (path === '/test/requests') {
    ctx.body = requests;
    return;
  }
  const match = path.match(/^\/interaction\/([^/]+)(\/login|\/confirm)?$/);
  if (!match) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const [, uid, action] = match;
  if (ctx.method === 'GET' && !action) {
    ctx.type = 'html';
    ctx.body = details.prompt.name === 'login'
      ? page('Sign in', `<form method="post" action="/interaction/${uid}/login">
          <input name="login"><input name="password" type="password"><button>Sign in</button></form>`)
      : page('Consent', `<form method="post" action="/interaction/${uid}/confirm"><button>Allow</button></form>`);
    return;
  }
  const form = new URLSearchParams(await new Promise((resolve) => {
    let text = '';
    ctx.req.on('data', (chunk) => { text += chunk; });
    ctx.req.on('end', () => resolve(text));
  }));
  if (action === '/login') {
    const user = USERS[form.get('login')];
    if (!user || user.password !== form.get('password')) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = page('Sign in', 'wrong user name or password');
      return;
    }
    await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: form.get('login') } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  const { prompt: { details: missing }, grantId, session, params } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  await provider.interactionFinished(ctx.req, ctx.res, { consent: { grantId: await grant.save() } }, {
    mergeWithLastSubmission: true,
  });
});

const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
