# The Airflow image of docker-compose.yaml: the official image, extended (not
# customised) with this project's pinned requirements and the sms_provider
# package, DAGs and include/ baked in. Nothing is installed at container start.
#
#   docker compose build
#
FROM apache/airflow:3.3.2-python3.11

# Installing as the airflow user, with apache-airflow pinned to the version the image
# ships, is how the official image expects to be extended: pip may then not move
# Airflow itself. requirements.txt is the project's full lock (resolved together with
# apache-airflow==3.3.2), so it constrains every other package the same way.
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/sms/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/sms/requirements.txt

# The provider (hooks, operators, connection types, the pool policy entry point) as a
# real install, then what the scheduler, DAG processor and workers read from disk.
COPY --chown=airflow:0 pyproject.toml README.md /opt/sms/
COPY --chown=airflow:0 plugins /opt/sms/plugins
RUN pip install --no-cache-dir --no-deps /opt/sms
COPY --chown=airflow:0 dags /opt/sms/dags
COPY --chown=airflow:0 include /opt/sms/include

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/sms/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/sms/plugins \
    SMS_CAMPAIGNS_DIR=/opt/sms/include/campaigns \
    SMS_DATA_ROOT=/opt/sms/data
WORKDIR /opt/sms
