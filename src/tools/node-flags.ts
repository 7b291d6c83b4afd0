// The Node flags guestlist runs with in production: the Docker CMD (and so fly.toml), the single
// executable (baked in as its execArgv) and the benchmark use these; a test checks the Dockerfile
// agrees, so the figures are a deployment's.
// A small young generation and a capped old one keep RSS near what the data needs on a 256 MB
// machine (see the README's benchmark); the caches are bounded well below the cap.
// --optimize-for-size trades about a seventh more CPU per login (3.0 against 2.6 ms) for a heap
// that V8 keeps closer to its live data and gives back when idle: 20 MB less held after a
// 10,000-login burst, and a flood that barely moves RSS. Memory, not CPU, is what a 256 MB machine
// runs out of.
// --no-maglev leaves V8 two tiers of compiled code instead of three: Maglev's own machine code and
// the compiled functions it makes cost about 3 MB of an idle server's RSS (64 against 67 MB in
// two runs each, after one login, before the bundle stopped loading fetch at start), and a login costs the same CPU without it (2.66-2.83 against
// 2.65-2.72 ms in the same runs), since the hot paths reach TurboFan either way.
export const SERVER_FLAGS: string[] = ['--max-semi-space-size=1', '--max-old-space-size=128', '--optimize-for-size', '--no-maglev'];
