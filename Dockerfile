# RocketWS image, built from this checkout:  docker build -t rocketws .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY rocketws ./rocketws
COPY clients/js ./clients/js
RUN pip install ".[redis]"
COPY manage.py settings.py ./

RUN useradd --system --uid 10001 --home /app rocketws
USER rocketws

EXPOSE 58000 59999
# Inside a container the MessagesSource must listen beyond loopback to be reachable
# from other containers; publish port 59999 only on a private network.
ENV ROCKETWS_WS_CONN=0.0.0.0:58000 ROCKETWS_MS_CONN=0.0.0.0:59999
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:59999/health', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
CMD ["python", "manage.py", "runserver", "--ws-conn=0.0.0.0:58000", "--ms-conn=0.0.0.0:59999"]
