# The two commands of the README. Both install what is missing first (scripts/setup.sh).
.PHONY: setup demo test bench
setup:
	@bash scripts/setup.sh
demo: setup
	node --import tsx src/cli/vlp.ts demo
test: setup
	npm test
bench: setup
	node --import tsx bench/engine.ts
