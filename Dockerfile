# syntax=docker/dockerfile:1
# The flashsale image: one program, `flashsale`, whose subcommand picks the workload (operator, api,
# order-writer, timeout-closer, compensator). The operator runs its data plane from this same image.
#   docker build -t flashsale-operator:0.1.0 .
# test/image.test.ts assembles the runtime stage's tree without Docker (same inputs, same commands)
# and runs it against real Kafka, Redis and MariaDB.

ARG NODE_IMAGE=node:24-bookworm-slim

# Build stage: dev dependencies, TypeScript compile, npm pack.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the image already has Node 24, so the `node` devDependency's installer is not needed.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY controller ./controller
COPY crds ./crds
# The package's `files` list decides what ships: bin/, dist/, crds/ and package.json, nothing else.
RUN npx tsc -p tsconfig.build.json \
 && npm pack --ignore-scripts \
 && mv flashsale-operator-*.tgz /tmp/flashsale.tgz

# Runtime stage: the packed package plus production dependencies pinned by the lockfile.
FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="flashsale-operator" \
      org.opencontainers.image.description="Kubernetes operator that runs flash sales on Kafka, Redis and MySQL" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /tmp/flashsale.tgz /tmp/flashsale.tgz
COPY --from=build /src/package-lock.json /app/package-lock.json
# npm ci --omit=dev against the lockfile: the exact production tree the tests ran. npm itself is
# removed afterwards: nothing installs at run time, and it is the largest attack surface left.
RUN tar -xzf /tmp/flashsale.tgz --strip-components=1 -C /app \
 && rm /tmp/flashsale.tgz \
 && npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /root/.npm \
 && ln -s /app/bin/flashsale.js /usr/local/bin/flashsale
# Files stay owned by root and read-only to the process; a numeric user lets Kubernetes verify
# runAsNonRoot. The chart runs it with a read-only root filesystem and a /tmp emptyDir.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["flashsale"]
CMD ["--help"]
