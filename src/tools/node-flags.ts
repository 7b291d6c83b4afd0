// The Node flags guestlist runs with in production: the Docker CMD (and so fly.toml), the single
// executable (baked in as its execArgv) and the benchmark use these; a test checks the Dockerfile
// agrees, so the figures are a deployment's.
// A small young generation and a capped old one keep RSS near what the data needs on a 256 MB
// machine (see the README's benchmark); the caches are bounded well below the cap.
// --optimize-for-size trades about a tenth more CPU per login for a heap that V8 keeps closer to
// its live data and gives back when idle: in the benchmark, 30 MB less after a 10,000-login
// burst and a flood that barely moves RSS. Memory, not CPU, is what a 256 MB machine runs out of.
export const SERVER_FLAGS: string[] = ['--max-semi-space-size=1', '--max-old-space-size=128', '--optimize-for-size'];
