#!/bin/sh
# No-op coverage tool: the real ones are downloaded by Bazel, which this offline setup does not.
exit 0
