# guestlist: one small process, no database. Build: docker build -t guestlist .
# Run:   docker run -p 8080:8080 -v guestlist-data:/data \
#          -v $PWD/guestlist.yaml:/etc/guestlist/guestlist.yaml:ro guestlist
# or pass the whole config in GUESTLIST_CONFIG_YAML instead of mounting a file.

FROM node:24-alpine AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the project's own Node 24 package is for machines without one; this image has it.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
# Bundled JavaScript (dist/main.js and its chunks): it starts faster than a tree of modules and
# needs no node_modules at run time.
RUN node src/tools/build.ts

FROM node:24-alpine AS app
# Listen on every interface by default (a config's own `listen:` still wins); the config is the
# file mounted at GUESTLIST_CONFIG, or the YAML in GUESTLIST_CONFIG_YAML when that is set.
ENV NODE_ENV=production \
    GUESTLIST_LISTEN=0.0.0.0:8080 \
    GUESTLIST_CONFIG=/etc/guestlist/guestlist.yaml \
    GUESTLIST_USER=node
WORKDIR /app
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY views ./views
COPY static ./static
# V8's compile cache for the bundle, made here by starting the server once on loopback with the
# production flags (a cache made without them is ignored) and this image's Node: a machine Fly
# wakes starts from the image, with an empty /tmp. Node keeps a cache per uid: root's (the
# process starts as root) and node's.
RUN node dist/warm-compile-cache.js --uid "$(id -u node)"
# Signing keys and cookie secrets live on this volume (data_dir: /data), so tokens survive deploys.
# A Fly volume or a bind mount hides this chown and arrives root-owned: so the process starts as
# root, makes data_dir GUESTLIST_USER's and becomes that user before it does anything else
# (src/privileges.ts). It never serves as root; if it cannot switch, it stops.
RUN mkdir -p /data /etc/guestlist && chown node:node /data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "--max-semi-space-size=1", "--max-old-space-size=128", "--optimize-for-size", "--no-maglev", "dist/main.js", "serve"]

# The same image with tailscaled beside guestlist, for a Fly machine that is its own tailnet node
# (src/deploy/fly.tailscale.toml; the README's "Tailscale next to guestlist"):
#   docker build --target tailscale -t guestlist:tailscale .
# tailscaled and its CLI come from Tailscale's official multi-arch image. guestlist listens on
# loopback only, behind `tailscale serve` (serve_headers), and whois goes to tailscaled's socket.
FROM app AS tailscale
COPY --from=docker.io/tailscale/tailscale:stable /usr/local/bin/tailscaled /usr/local/bin/tailscale /usr/local/bin/
COPY src/deploy/tailscale-entrypoint.sh /usr/local/bin/guestlist-tailscale
ENV GUESTLIST_LISTEN=127.0.0.1:8080 \
    TS_SOCKET=/var/run/tailscale/tailscaled.sock \
    TS_STATE_DIR=/data/tailscale
ENTRYPOINT ["/usr/local/bin/guestlist-tailscale"]

# The default image (the last stage): guestlist alone.
FROM app
