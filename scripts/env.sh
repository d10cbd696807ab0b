# The environment Tandem runs in on this installation, sourced by run.sh and manage.sh (from the
# repository root): a secret key made once in var/secret_key, DEBUG off (no debug pages), HTTPS
# off because it serves plain HTTP on localhost. A variable already set in the shell wins.
mkdir -p var
[ -s var/secret_key ] || .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(50))" >var/secret_key
export SECRET_KEY="$(cat var/secret_key)" HTTPS="${HTTPS:-0}" DEBUG="${DEBUG:-0}"
