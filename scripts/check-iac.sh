#!/usr/bin/env bash
# The offline checks of the AWS deployment: cfn-lint, checkov (no failed check; skips are in
# template.yaml with their reasons), `sam validate --lint`, and asl-validator on the state
# machines (JSONPath and JSONata versions), which cfn-lint does not look into.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/iac-tools.sh
if [ ! -x node_modules/.bin/asl-validator ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "check-iac: asl-validator" >&2
npx --no-install asl-validator --json-path statemachine/pipeline.asl.json
npx --no-install asl-validator --json-path statemachine/pipeline.jsonata.asl.json
echo "check-iac: cfn-lint" >&2
.venv/sam/bin/cfn-lint template.yaml
echo "check-iac: checkov" >&2
.venv/checkov/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download
echo "check-iac: sam validate --lint" >&2
# No credentials are needed; the region only has to be named.
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} \
  .venv/sam/bin/sam validate --lint --template template.yaml
