#!/usr/bin/env bash
# Logs in through Django's own login view (django.contrib.auth.views.LoginView) with curl, as a browser form
# would: GET the form (csrftoken cookie and hidden token), POST it back. Prints the session cookie
# ("sessionid=...") on success; exits 1 with the answer otherwise.
# Usage: login.sh BASE_URL USERNAME PASSWORD
set -euo pipefail
base=$1
jar=$(mktemp)
trap 'rm -f "$jar"' EXIT
form=$(curl -sf -c "$jar" "$base/accounts/login/")
token=$(printf '%s' "$form" | sed -n 's/.*name="csrfmiddlewaretoken" value="\([^"]*\)".*/\1/p' | head -1)
[ -n "$token" ] || { echo "no CSRF token in the login form" >&2; exit 1; }
status=$(curl -s -b "$jar" -c "$jar" -o /dev/null -w '%{http_code}' -H "Referer: $base/accounts/login/" \
    --data-urlencode "csrfmiddlewaretoken=$token" --data-urlencode "username=$2" --data-urlencode "password=$3" "$base/accounts/login/")
session=$(awk '$6 == "sessionid" { print $7 }' "$jar")
if [ "$status" != 302 ] || [ -z "$session" ]; then
    echo "login answered $status without a session" >&2
    exit 1
fi
echo "sessionid=$session"
