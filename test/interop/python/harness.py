"""What both Python client scripts share: the configuration the test passes, and the report.

Every scenario is reported, never raised: `run` stores what a scenario returned, or the library's
error as JSON, and `report` prints everything as one JSON object for the test to assert on.
"""
import json
import sys

config = json.loads(sys.argv[1])
results = {}


def run(name, scenario):
    try:
        results[name] = scenario()
    except Exception as error:  # reported to the test, which decides
        results[name] = {
            "error": getattr(error, "error", None),
            "description": getattr(error, "description", None),
            "status_code": getattr(error, "status_code", None),
            "exception": type(error).__name__,
            "message": str(error),
        }


def token_of(token):
    return {"token": dict(token)}


def report():
    print(json.dumps(results))
