# The kpistream image: one image for worker and exporter (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY kpistream ./kpistream
RUN pip install --no-cache-dir . && useradd --system --uid 10001 kpistream
USER kpistream
ENTRYPOINT ["kpistream"]
CMD ["--help"]
