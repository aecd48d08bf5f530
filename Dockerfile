# syntax=docker/dockerfile:1
# Postern router image: relay, gateway or hub (docs/OPERATIONS.md, "Docker").
#   docker build -t postern .
#   docker run -d -p 443:7443 -v postern-relay:/var/lib/postern -e POSTERN_SECRET=... \
#     postern relay --listen 0.0.0.0:7443 --log-format json
ARG NODE_VERSION=22

# Build: every dependency, the compiler, then only what runs.
FROM node:${NODE_VERSION}-bookworm-slim AS build
# better-sqlite3 12 (loaded on Node 20 only) builds from source when no prebuilt binary fits.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages ./packages
COPY bench/package.json ./bench/package.json
RUN npm ci --no-audit --no-fund
RUN npx tsc -b packages/cli
# Production dependencies only; sources and build files out of the image.
RUN npm prune --omit=dev --no-audit --no-fund \
  && rm -rf packages/*/src packages/*/test packages/*/tsconfig*.json packages/*/dist/*.tsbuildinfo packages/testing packages/lab bench

# Run: no compiler, no package manager cache, an unprivileged user.
FROM node:${NODE_VERSION}-bookworm-slim
ENV NODE_ENV=production \
    POSTERN_DATA=/var/lib/postern \
    POSTERN_HEALTH_URL=http://127.0.0.1:7443/healthz
WORKDIR /app
COPY --from=build --chown=root:root /app /app
RUN ln -s /app/packages/postern/bin/postern.js /usr/local/bin/postern \
  && mkdir -p /var/lib/postern \
  && chown node:node /var/lib/postern \
  && chmod 700 /var/lib/postern
USER node
# The router's store (router.db) and node key: keep them across restarts and upgrades.
VOLUME ["/var/lib/postern"]
EXPOSE 7443
# Liveness from the public /healthz (200 while the process serves). Listen on 7443, or set
# POSTERN_HEALTH_URL (an https:// listener with a private CA needs NODE_EXTRA_CA_CERTS).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.POSTERN_HEALTH_URL,{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# docker stop sends SIGTERM: the router closes its links with CLOSE, commits its store and
# exits 0 (within --shutdown-timeout, 10 s by default; docker's own grace period is 10 s too).
STOPSIGNAL SIGTERM
ENTRYPOINT ["postern"]
CMD ["--help"]
