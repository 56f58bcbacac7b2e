# The two set-up commands (see README): `make demo` and `make test`. Both create .venv and install
# everything they need on a fresh machine; re-running them skips the install when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medal-installed
# Debian packages the napari plugin's tests need: an X server (Xvfb) and the libraries Qt's xcb
# platform and napari's OpenGL canvas load. Installed by `make test` when any is missing (as root,
# or through sudo). QT_QPA_PLATFORM=offscreen is no substitute: napari's canvas needs real GL.
GUI_PACKAGES := xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-cursor0 \
	libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-randr0 \
	libfontconfig1 libdbus-1-3

.PHONY: install gui-deps demo test clean

# medal, its test tools, and the napari plugin (napari_plugin/, with PyQt6 for the tests)
$(STAMP): pyproject.toml constraints.txt Makefile napari_plugin/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]" -e "./napari_plugin[test]"
	touch $(STAMP)

gui-deps:
	@if dpkg -s $(GUI_PACKAGES) >/dev/null 2>&1; then echo "GUI test packages present"; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing GUI test packages: $(GUI_PACKAGES)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends $(GUI_PACKAGES) >/dev/null; fi

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/medal demo

# pytest exits 5 when it collected no test; that is not a failure of the suite.
# MEDAL_REQUIRE_GUI=1: a missing X server fails the napari tests instead of skipping them
# TEST_WORKERS: pytest-xdist processes (2: 14.5 -> 9.6 min on 2 cores; much of a test is Python and imports)
TEST_WORKERS ?= 2
test: $(STAMP) gui-deps
	MEDAL_REQUIRE_GUI=1 $(BIN)/python -m pytest tests -q -n $(TEST_WORKERS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
