#!/usr/bin/env bash
# Placeholder until the web page's build lands: nothing to build yet.
exit 0
