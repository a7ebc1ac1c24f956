# syntax=docker/dockerfile:1
#
# The mcp-gateway processor image (the same image also runs the demo MCP servers of
# deploy/compose). Envoy runs from the upstream envoyproxy/envoy image next to it.
#
#   docker build -t mcp-gateway:0.1.0 .
#   docker run --rm -v $PWD/gateway.yaml:/etc/mcp-gateway/gateway.yaml:ro mcp-gateway:0.1.0
#
# Other commands: `docker run --rm mcp-gateway:0.1.0 envoy-config --config FILE`, `validate`, `hash-key`.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: full dependency tree, TypeScript compile ------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency would download a second Node binary in its install
# script; the image's own Node 24 compiles the code. No dependency needs a build step.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY protos ./protos
COPY src ./src
COPY scripts ./scripts
COPY test ./test
RUN npm run build

# ---- prod-deps: runtime dependencies only -----------------------------------------------------
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- runtime ----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY protos ./protos
COPY package.json ./
# Numeric uid/gid (the image's `node` user) so Kubernetes can check runAsNonRoot.
USER 1000:1000
# 9001: ext_proc gRPC, 9090: admin HTTP (/healthz, /readyz, /metrics) — when the config binds them.
EXPOSE 9001 9090
ENTRYPOINT ["node", "--max-semi-space-size=4", "dist/src/main.js"]
CMD ["serve", "--config", "/etc/mcp-gateway/gateway.yaml"]
