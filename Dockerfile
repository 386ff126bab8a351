# The Switchyard gateway, CPU-only (embedding + routing need no GPU; the experts have them).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SWITCHYARD_CACHE=/cache
WORKDIR /app
# torch first and pinned to its CPU wheel: an unpinned torch pulls several GB of CUDA.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" || pip install "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY routers routers
COPY experts experts
COPY evaluation evaluation
COPY kernels kernels
COPY switchyard switchyard
RUN pip install .
EXPOSE 8000
ENTRYPOINT ["switchyard"]
CMD ["serve", "--config", "/etc/switchyard/gateway.yaml", "--host", "0.0.0.0", "--port", "8000"]
