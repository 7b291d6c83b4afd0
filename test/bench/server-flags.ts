// The Node flags guestlist runs with in production: the Docker CMD and the benchmark use these
// (a test checks the Dockerfile agrees), so the figures are the ones a deployment gets.
export const SERVER_FLAGS: string[] = [];
