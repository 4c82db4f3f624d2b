// OAuth 2.0 authorization server for the integration tests: `oidc-provider` with the client
// credentials grant, token introspection and short token lifetimes for some clients.
//
// Usage: node oauth_server.mjs   (settings from the environment)
//   OAUTH_CLIENT_SECRET  the secret of every test client (required)
//   OAUTH_READY_FILE     written with {"port": N} once listening (required)
//   OAUTH_PORT           port on 127.0.0.1 (default 0: any free port)
//   OAUTH_SHORT_TTL_S    lifetime of tokens issued to `*-short-*` clients (default 3)
//
// Clients:
//   smtp-server                   introspects tokens for the test SMTP server
//   scl-notify-1 .. scl-notify-30 tokens live one hour (one client per test, so counts of
//                                 issued tokens do not mix between tests running in parallel)
//   scl-notify-short-1 .. -10     tokens live OAUTH_SHORT_TTL_S seconds
// Every client authenticates with client_secret_basic or client_secret_post. A wrong secret
// gets 401 `invalid_client`.
//
// Besides the provider's own endpoints (/token, /token/introspection) there is one endpoint
// for tests: GET /test/issued/<client_id> answers {"count": N}, the number of tokens issued to
// that client since start.
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const secret = process.env.OAUTH_CLIENT_SECRET;
const readyFile = process.env.OAUTH_READY_FILE;
const shortTtl = Number(process.env.OAUTH_SHORT_TTL_S || 3);
if (!secret || !readyFile) {
  console.error('OAUTH_CLIENT_SECRET and OAUTH_READY_FILE must be set');
  process.exit(2);
}

const scopes = ['https://outlook.office365.com/.default', 'smtp'];
const client = (clientId) => ({
  client_id: clientId,
  client_secret: secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_post',
  scope: scopes.join(' '),
});
const clients = [{ ...client('smtp-server'), token_endpoint_auth_method: 'client_secret_basic' }];
for (let n = 1; n <= 30; n++) clients.push(client(`scl-notify-${n}`));
for (let n = 1; n <= 10; n++) clients.push(client(`scl-notify-short-${n}`));

const issued = new Map();
let callback = null;
const server = http.createServer((request, response) => {
  const match = /^\/test\/issued\/([^/?]+)$/.exec(request.url || '');
  if (request.method === 'GET' && match) {
    const body = JSON.stringify({ count: issued.get(decodeURIComponent(match[1])) || 0 });
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(body);
    return;
  }
  callback(request, response);
});

server.listen(Number(process.env.OAUTH_PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    scopes,
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: { enabled: false },
    },
    ttl: {
      ClientCredentials(ctx, token, client) {
        return client.clientId.includes('-short-') ? shortTtl : 3600;
      },
    },
  });
  provider.on('grant.success', (ctx) => {
    const id = ctx.oidc.client?.clientId;
    if (id) issued.set(id, (issued.get(id) || 0) + 1);
  });
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  callback = provider.callback();
  fs.writeFileSync(`${readyFile}.tmp`, JSON.stringify({ port }));
  fs.renameSync(`${readyFile}.tmp`, readyFile);
  console.log(`oauth server on ${issuer}`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
