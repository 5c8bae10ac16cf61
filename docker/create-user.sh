#!/bin/sh
# Make NAME the image's unprivileged user with uid and gid ID, whatever the base image already
# holds at those ids, and give it the folders it writes to.
#
#   sh create-user.sh NAME ID [DIR...]          e.g. sh create-user.sh nsa 1000 /cache /workspace
#
# ubuntu:24.04 (and the nvidia/cuda images built on it) ships a user `ubuntu` and a group `ubuntu`
# at 1000:1000, so a plain `useradd --uid 1000` fails there; ubuntu:22.04 has neither. The account
# that holds the id is removed rather than renamed: renaming would keep whatever supplementary
# groups (sudo, adm) a base image gave it.
#
# ACCOUNT_ROOT: apply everything to the account files and folders under this directory instead of /
# (the shadow tools' --prefix). The tests run this script against copies of Ubuntu's account files.
set -eu

if [ "$#" -lt 2 ]; then
    echo "create-user.sh: expected NAME ID [DIR...], got $# argument(s): $*" >&2
    exit 2
fi
name=$1
id=$2
shift 2
root=${ACCOUNT_ROOT:-}

# The name holding field 3 (the id) of an account file, or nothing.
holder() { awk -F: -v id="$id" '$3 == id { print $1; exit }' "$root/etc/$1"; }
# Field FIELD of the entry NAME in an account file, or nothing.
field() { awk -F: -v n="$2" -v f="$3" '$1 == n { print $f; exit }' "$root/etc/$1"; }
# A shadow tool, pointed at ACCOUNT_ROOT when it is set.
tool() {
    cmd=$1
    shift
    if [ -n "$root" ]; then
        "$cmd" --prefix "$root" "$@"
    else
        "$cmd" "$@"
    fi
}

# Refuse before changing anything.
existing=$(field passwd "$name" 3)
if [ -n "$existing" ] && [ "$existing" != "$id" ]; then
    echo "create-user.sh: expected user $name to be absent or to have uid $id, found uid $existing;" \
         "remove it first or choose another NAME" >&2
    exit 1
fi
existing=$(field group "$name" 3)
if [ -n "$existing" ] && [ "$existing" != "$id" ]; then
    echo "create-user.sh: expected group $name to be absent or to have gid $id, found gid $existing;" \
         "remove it first or choose another NAME" >&2
    exit 1
fi

user=$(holder passwd)
if [ -n "$user" ] && [ "$user" != "$name" ]; then
    # Exit code 12: the home folder was not removed (not owned by that user); the account is gone,
    # which is all this image needs.
    rc=0
    tool userdel --remove "$user" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 12 ]; then
        echo "create-user.sh: expected to remove user $user, which holds uid $id, but userdel exited $rc;" \
             "remove it in the Dockerfile before this script or choose another ID" >&2
        exit 1
    fi
fi

group=$(holder group)
if [ -n "$group" ] && [ "$group" != "$name" ]; then
    if ! tool groupdel "$group"; then
        echo "create-user.sh: expected gid $id to be free or named $name, found group $group, which" \
             "could not be removed (still another user's primary group?); remove that user first or" \
             "choose another ID" >&2
        exit 1
    fi
fi

[ -n "$(field group "$name" 1)" ] || tool groupadd --gid "$id" "$name"
[ -n "$(field passwd "$name" 1)" ] || \
    tool useradd --uid "$id" --gid "$id" --create-home --shell /bin/bash "$name"

# Numeric ids: under ACCOUNT_ROOT, names would resolve through this machine's accounts, not root's.
for dir in "$@"; do
    mkdir -p "$root$dir"
    chown "$id:$id" "$root$dir"
done
