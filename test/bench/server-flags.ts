// The Node flags guestlist runs with in production: the Docker CMD (and so fly.toml) and the
// benchmark use these, and a test checks the Dockerfile agrees, so the figures are a deployment's.
// A small young generation and a capped old one keep RSS near what the data needs on a 256 MB
// machine (see the README's benchmark); the caches are bounded well below the cap.
export const SERVER_FLAGS: string[] = ['--max-semi-space-size=1', '--max-old-space-size=128'];
