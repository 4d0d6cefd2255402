# hubbub as a single self-contained binary in a minimal image.
#   docker build -t hubbub .
#   docker run -p 8000:8000 hubbub

# Stage 1: fetch the pinned npm dependencies and compile one binary.
FROM denoland/deno:2.9.6 AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY lib ./lib
COPY static ./static
RUN deno install --frozen --entrypoint main.ts \
 && deno compile --frozen --allow-net --allow-env --output /out/hubbub main.ts

# Stage 2: just the binary, run as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/hubbub /usr/local/bin/hubbub
USER nonroot
EXPOSE 8000
# Docker sets HOSTNAME to the container id, so the address is given as a flag
# (flags win over the environment). Extra `docker run` arguments are appended.
ENTRYPOINT ["/usr/local/bin/hubbub", "--hostname", "0.0.0.0"]
