"""Active-learning campaigns: a simulator, an SQLite ledger of every run, a surrogate per round.

``choral campaign run campaign.toml`` proposes an initial design, runs the simulator on it, fits
a surrogate, asks the acquisition for the next batch, and repeats until the budget or the stopping
rule ends it. Every run is recorded in the ledger (:mod:`choral.campaign.ledger`), so a campaign
killed at any moment resumes without losing or repeating a finished run.
"""

from choral.campaign.config import CampaignConfig
from choral.campaign.ledger import Ledger
from choral.campaign.runner import run_campaign

__all__ = ["CampaignConfig", "Ledger", "run_campaign"]
