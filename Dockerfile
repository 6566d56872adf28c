# syntax=docker/dockerfile:1
# One image for every process of the stack: web (gunicorn), shard workers, beat and Flower.
# Build stage: dependencies (pinned in requirements.txt) into a virtual environment.
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY requirements.txt .
RUN python -m venv /venv \
    && /venv/bin/pip install --no-cache-dir -r requirements.txt

# Runtime stage: no compiler, no pip cache, a non-root user.
FROM python:3.11.7-slim-bookworm AS runtime
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production
RUN groupadd --system --gid 10001 ledger \
    && useradd --system --uid 10001 --gid ledger --home-dir /app --shell /usr/sbin/nologin ledger \
    && mkdir -p /data \
    && chown ledger:ledger /data
COPY --from=build /venv /venv
WORKDIR /app
# Code owned by root: the app user can read it, not change it.
COPY . .
# collectstatic needs settings but no database; the key and addresses below exist only during this build step.
RUN SECRET_KEY=collectstatic-only-build-time-key-0123456789abcdef ALLOWED_HOSTS=build \
    DATABASE_URL=postgres://build@build/build REDIS_URL=redis://build:6379/0 \
    python manage.py collectstatic --noinput --verbosity 0
USER 10001:10001
EXPOSE 8000 5555
# Health checks are per service in docker-compose.yml: web, workers and Flower differ.
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--no-control-socket", "--graceful-timeout", "30", "--timeout", "30"]
