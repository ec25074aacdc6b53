// The peer of bench/compare.sh: node-oidc-provider serving client_credentials, introspection
// and revocation for one confidential client, the way its documentation sets them up.
//
//   PORT=3101 FORMAT=opaque|jwt ALG=RS256|ES256 node server.mjs
//
// Tokens are bound to one resource server so that FORMAT picks opaque or RFC 9068 JWT access
// tokens. Storage is the built-in memory adapter (an LRU of 1000 entries): oidc-provider ships
// no durable adapter, so this peer does less work per token than authledger, which flushes
// every token's event to disk before answering.
import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT ?? 3101);
const format = process.env.FORMAT ?? 'opaque';
const alg = process.env.ALG ?? 'ES256';
const audience = 'urn:authledger:bench';
const client = {
  client_id: process.env.CLIENT_ID ?? 'bench',
  client_secret: process.env.CLIENT_SECRET ?? 'bench-secret-0123456789abcdef-0123456',
};
if (!['opaque', 'jwt'].includes(format)) throw new Error(`FORMAT: opaque or jwt, not ${format}`);

const signingKey = (kind, options, kid, keyAlg) => ({
  ...generateKeyPairSync(kind, options).privateKey.export({ format: 'jwk' }),
  kid,
  alg: keyAlg,
  use: 'sig',
});

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    ...client,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'read write',
  }],
  jwks: {
    keys: [
      signingKey('ec', { namedCurve: 'P-256' }, 'es256', 'ES256'),
      signingKey('rsa', { modulusLength: 2048 }, 'rs256', 'RS256'),
    ],
  },
  cookies: { keys: ['unused-by-client-credentials'] },
  scopes: ['read', 'write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'read write',
        audience,
        accessTokenTTL: 3600,
        accessTokenFormat: format,
        ...(format === 'jwt' ? { jwt: { sign: { alg } } } : {}),
      }),
    },
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider on 127.0.0.1:${port} format=${format} alg=${alg} pid=${process.pid}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
