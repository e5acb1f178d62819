# pgcast developer commands. `make help` lists them.
GO      ?= go
BIN     ?= bin/pgcast
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# golangci-lint is built from source into .tools/ (once per version).
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT := .tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Start pgcast with a real Postgres (DATABASE_URL, or a private throwaway cluster)
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/pgcast dev

.PHONY: test
test: ## go vet, then every test with -race against real Postgres
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 12m ./...

.PHONY: test-docker
test-docker: ## Run the suite against the docker compose Postgres (TEST_DATABASE_URL)
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres:postgres@localhost:5432/postgres?sslmode=disable} \
		$(GO) test -race -count=1 -timeout 12m ./...

.PHONY: test-js
test-js: build ## The JavaScript client's tests (node --test) against a real pgcast (TEST_DATABASE_URL, or a throwaway cluster)
	npm ci --prefix clients/js --ignore-scripts --no-audit --no-fund
	PGCAST_BIN=$(CURDIR)/$(BIN) node clients/js/test/run.js

.PHONY: test-browser
test-browser: build ## The console (/console/) in headless Chromium (needs the chromium package)
	npm ci --prefix clients/js --ignore-scripts --no-audit --no-fund
	PGCAST_BIN=$(CURDIR)/$(BIN) node clients/js/test/run.js --browser

.PHONY: lint
lint: lint-go lint-docs ## golangci-lint (incl. import layering), then the AsyncAPI document

.PHONY: lint-go
lint-go: $(GOLANGCI_LINT) ## golangci-lint with .golangci.yml (installs it into .tools/ if missing)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	GOBIN=$(CURDIR)/$(dir $(GOLANGCI_LINT)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: lint-docs
lint-docs: ## Validate docs/asyncapi.yaml with the official AsyncAPI parser (needs node and npm)
	npm ci --prefix docs --ignore-scripts --no-audit --no-fund
	node docs/validate-asyncapi.mjs

.PHONY: build
build: ## Build bin/pgcast
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pgcast

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s)
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$pkg || exit 1; \
		done; \
	done

.PHONY: bench
bench: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: clean
clean: ## Remove build output, the local dev cluster (.pgcast/; as root, the /var/tmp/pgcast-dev-* dir it names) and lint tools (.tools/, docs/node_modules/)
	@d=$$(sed -n 's|^ *"cluster_dir": "\(/var/tmp/pgcast-dev-[0-9a-f]*\)",*$$|\1|p' .pgcast/dev.json 2>/dev/null); \
		if [ -n "$$d" ]; then echo "rm -rf $$d"; rm -rf "$$d"; fi
	rm -rf bin .pgcast .tools docs/node_modules clients/js/node_modules
