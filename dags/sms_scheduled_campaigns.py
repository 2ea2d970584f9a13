"""Airflow DAGs ``sms_campaign__<campaign_id>``: one per file in ``include/campaigns/``."""

import os
from pathlib import Path

from sms_provider.dag_builders.campaign import campaign_dags

CAMPAIGNS = Path(os.environ.get("SMS_CAMPAIGNS_DIR")
                 or Path(__file__).resolve().parent.parent / "include" / "campaigns")

globals().update(campaign_dags(CAMPAIGNS))
