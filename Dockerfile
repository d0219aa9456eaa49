# syntax=docker/dockerfile:1
# Build stage: dev dependencies, TypeScript compile.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the image already has Node 24, so the `node` devDependency's installer is not needed.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY controller ./controller
COPY crds ./crds
RUN npx tsc -p tsconfig.build.json && npm pack --ignore-scripts && mv flashsale-operator-*.tgz /tmp/flashsale.tgz

# Runtime stage: the packed package with production dependencies only.
FROM node:24-bookworm-slim
ENV NODE_ENV=production NODE_OPTIONS=--disable-warning=TimeoutNegativeWarning
WORKDIR /app
COPY --from=build /tmp/flashsale.tgz /tmp/flashsale.tgz
RUN tar -xzf /tmp/flashsale.tgz --strip-components=1 -C /app && rm /tmp/flashsale.tgz \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force \
 && ln -s /app/bin/flashsale.js /usr/local/bin/flashsale
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["flashsale"]
CMD ["--help"]
