import { DEFAULT_ADMIN, DEFAULT_BRANDING, DEFAULT_DATA_DIR, DEFAULT_RATE_LIMITS } from '../config/config.ts';
import type { Config } from '../config/load.ts';
import { DEFAULT_TAILSCALE_SOCKET } from '../sources/tailscale/config.ts';

// `npm start` with no config: guestlist on localhost with a built-in relying party at `/`
// (app.ts), signing in whoever the local tailscaled vouches for, or else a sample user
// (source.ts).

const DEMO_CLIENT_ID = 'demo';
const DEMO_CLIENT_SECRET = 'demo-secret-for-localhost-only';

export function demoConfig(env: Record<string, string | undefined> = process.env): Config {
  const port = env.PORT && /^\d+$/.test(env.PORT) ? Number(env.PORT) : 8080;
  const issuer = `http://localhost:${port}`;
  return {
    issuer,
    listen: { host: '127.0.0.1', port },
    data_dir: DEFAULT_DATA_DIR,
    clients: [{
      client_id: DEMO_CLIENT_ID,
      client_secret: DEMO_CLIENT_SECRET,
      redirect_uris: [`${issuer}/demo/callback`],
      post_logout_redirect_uris: [`${issuer}/`],
      name: 'the guestlist demo app',
      require_pkce: true,
    }],
    groups: { demo: ['ada@example.com'] },
    tailscale: { socket: env.TAILSCALE_SOCKET || DEFAULT_TAILSCALE_SOCKET, allow_tagged: false, serve_headers: false },
    branding: { ...DEFAULT_BRANDING },
    rate_limits: { ...DEFAULT_RATE_LIMITS },
    demo: true,
    admin: { ...DEFAULT_ADMIN },
  };
}
