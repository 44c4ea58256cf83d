# fleetbridge: one image for every Python service (bridge, API, simulator, migrations).
#
#   docker build -t fleetbridge .
#   docker run --rm fleetbridge --help
#
# The command is `fleet`: pass a subcommand (`bridge`, `api`, `sim …`, `db migrate`) and configure it
# with FLEETBRIDGE_* variables (docs/configuration.md). compose.yaml runs the whole stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the distribution is built from: pyproject.toml names README.md as its readme.
# Dependencies from the hashed lock first (their own layer), then the project without resolving anything.
WORKDIR /src
COPY requirements/runtime.lock ./requirements/runtime.lock
RUN pip install --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY models ./models
COPY config ./config
COPY broker ./broker
COPY bridge ./bridge
COPY api ./api
COPY firmware_sim ./firmware_sim
COPY stack ./stack
COPY cli ./cli
COPY engine ./engine
RUN pip install --no-deps --no-build-isolation . && rm -rf /src

# The production broker config, for reference and for images built FROM this one. The compose stack
# runs the eclipse-mosquitto image with compose/mosquitto.conf instead.
WORKDIR /app
COPY mosquitto.conf ./mosquitto.conf

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin fleet
USER fleet

# The API's port (FLEETBRIDGE_API_PORT); set FLEETBRIDGE_API_HOST=0.0.0.0 to listen beyond the container.
EXPOSE 8000
ENTRYPOINT ["fleet"]
CMD ["--help"]
