// Reads one JSON request per line on stdin, writes one JSON answer per line: the IAM policy simulator
// (@cloud-copilot/iam-simulate) as an independent oracle for conditional denies, which moto ignores.
// Request: {"principal", "action", "resource", "accountId", "context": {...}, "policies": [{name, policy}]}
// Answer:  {"result": "Allowed" | "ExplicitlyDenied" | "ImplicitlyDenied"} or {"error": "..."}
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { createInterface } from "node:readline";

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  try {
    const ask = JSON.parse(line);
    const simulation = {
      request: {
        principal: ask.principal,
        action: ask.action,
        resource: { resource: ask.resource, accountId: ask.accountId },
        contextVariables: ask.context ?? {},
      },
      identityPolicies: ask.policies,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
    };
    const answer = await runSimulation(simulation, {});
    if (answer.errors) {
      process.stdout.write(JSON.stringify({ error: JSON.stringify(answer.errors) }) + "\n");
    } else {
      // overallResult: for a wildcard resource, the result across every resource it stands for.
      process.stdout.write(JSON.stringify({ result: answer.overallResult }) + "\n");
    }
  } catch (error) {
    process.stdout.write(JSON.stringify({ error: String(error) }) + "\n");
  }
}
