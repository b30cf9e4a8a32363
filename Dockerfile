# The hub's image: every process of the Procfile runs from it (docker-compose.yml).
# Configuration, secrets included, comes from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements/base.txt requirements/base.txt
RUN pip install -r requirements/base.txt

COPY . .

# WhiteNoise serves the collected files from the image. Settings refuse to load
# without SECRET_KEY when DEBUG is off, so this one command gets a throwaway
# key that signs nothing and stays out of the image's environment.
RUN SECRET_KEY=collectstatic-only-throwaway-key python manage.py collectstatic --noinput --verbosity 0

# The code stays root-owned and read-only to the user the processes run as.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hub
USER hub

EXPOSE 8000
CMD ["daphne", "--verbosity", "0", "--ping-interval", "60", "--bind", "0.0.0.0", "--port", "8000", "project.asgi:application"]
