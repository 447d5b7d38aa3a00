# The listening survey (songfeel/annotate): serve the demo songs, or the manifest of stage 01
# when data/manifest.csv exists. Set SURVEY_ADMIN_TOKEN to a long random string before deploying.
PYTHON ?= python
SURVEY_HOST ?= 127.0.0.1
SURVEY_PORT ?= 8000
SURVEY_DATABASE_URL ?= sqlite:///data/survey.sqlite
SURVEY_ARGS ?=  # more options, e.g. --manifest data/manifest.csv --questions 30 (python -m songfeel.annotate --help)

.PHONY: annotate test

annotate:
	$(PYTHON) -m songfeel.annotate --host $(SURVEY_HOST) --port $(SURVEY_PORT) \
		--database-url $(SURVEY_DATABASE_URL) --admin-token $${SURVEY_ADMIN_TOKEN:-change-me} $(SURVEY_ARGS)

test:
	$(PYTHON) -m pytest
