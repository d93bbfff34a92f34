# Thin forwarder: every target is a script in scripts/, which also runs without make.
TARGETS := $(shell ls scripts)

.DEFAULT_GOAL := ci

$(TARGETS):
	./scripts/$@

.PHONY: $(TARGETS)
