# hubbub as a single self-contained binary in a minimal image.
#   docker build -t hubbub .
#   docker run -p 8000:8000 -v hubbub-data:/data hubbub
# Give options as HUBBUB_* environment variables (docker run -e HUBBUB_PORT=9000 …) rather than
# flags: the health check runs the binary again and reads the environment, not the flags.
# tests/dockerfile_test.ts replays the build stage's first COPY set and its `deno install`.

# Stage 1: fetch the pinned npm dependencies, then compile one binary.
FROM denoland/deno:2.9.6 AS build
WORKDIR /src
# The dependency manifests alone (package.json too: deno.lock records its dependencies), so this
# layer and the downloads are reused until a manifest changes.
COPY deno.json deno.lock package.json ./
RUN deno install --frozen
# The runtime `deno compile` embeds is downloaded once here, not after every code change.
RUN mkdir /tmp/warm && cd /tmp/warm && touch noop.ts \
 && deno compile --no-config --output noop noop.ts && rm -r /tmp/warm
# The data directory, for the runtime stage to copy with its owner (distroless has no shell).
RUN mkdir -p /out/data
COPY main.ts ./
COPY lib ./lib
COPY static ./static
# Read and write: the message history's SQLite file lives in --data-dir (/data here). The V8 flags are
# deno.json's (tests/deno_flags_test.ts checks they agree): see "V8 flags on Deno" in the README.
RUN deno compile --frozen --v8-flags=--max-semi-space-size=8,--single-threaded-gc --allow-net --allow-env --allow-read --allow-write --output /out/hubbub main.ts

# Stage 2: just the binary, run as an unprivileged user (distroless nonroot: uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/hubbub /usr/local/bin/hubbub
COPY --from=build --chown=65532:65532 /out/data /data
# The message history (/data/history.db): mount a volume to keep it across containers.
VOLUME /data
WORKDIR /data
ENV HUBBUB_DATA_DIR=/data
USER nonroot
EXPOSE 8000
# GET /readyz through the binary itself (the image has no curl): 503 while shutting down, while
# the cluster's Redis is unreachable, or when the last write to the history failed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/hubbub", "--healthcheck"]
# Listens on 0.0.0.0:8000 by default (HOSTNAME, which Docker sets, is never read).
# Extra `docker run` arguments are appended as flags.
ENTRYPOINT ["/usr/local/bin/hubbub"]
