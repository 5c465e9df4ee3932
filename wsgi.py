"""Entry point for WSGI servers: `gunicorn wsgi:app`."""

from loyalty import create_app

app = create_app()
