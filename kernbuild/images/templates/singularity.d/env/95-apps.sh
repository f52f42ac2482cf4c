#!/bin/sh
if test -n "${APPTAINER_APPNAME:-}"; then
    export APPTAINER_APPNAME
    if ! test -d "/scif/apps/${APPTAINER_APPNAME}"; then
        echo "Could not locate the container application: ${APPTAINER_APPNAME}"
        exit 1
    fi
    SCIF_APPS=/scif/apps
    SCIF_APPROOT="/scif/apps/${APPTAINER_APPNAME}"
    PATH="$SCIF_APPROOT/bin:$SCIF_APPROOT:$PATH"
    LD_LIBRARY_PATH="$SCIF_APPROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    for script in "$SCIF_APPROOT/scif/env/01-base.sh" "$SCIF_APPROOT/scif/env/90-environment.sh"; do
        if [ -f "$script" ]; then . "$script"; fi
    done
    export SCIF_APPS SCIF_APPROOT PATH LD_LIBRARY_PATH
fi
