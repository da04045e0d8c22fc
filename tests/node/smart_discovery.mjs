// fhir-kit-client's SMART discovery: reads {"baseUrl"} on stdin, prints the token URL (and the
// authorize URL, if any) that smartAuthMetadata() finds.
import { readFileSync } from 'node:fs';
import { Client } from 'fhir-kit-client';

const { baseUrl } = JSON.parse(readFileSync(0, 'utf8'));
const metadata = await new Client({ baseUrl }).smartAuthMetadata();
process.stdout.write(JSON.stringify({
  tokenUrl: metadata.tokenUrl?.toString() ?? null,
  authorizeUrl: metadata.authorizeUrl?.toString() ?? null,
}));
