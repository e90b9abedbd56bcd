"""Where instances come from. `base` is the interface; each other module is one provider.

Installed as `brev.providers`. Providers are found through the `brev.providers` entry-point
group, so a third-party package can add one without touching brev. Cloud SDKs are imported
inside their provider's methods only: `brev --help` never pays for boto3.
"""
