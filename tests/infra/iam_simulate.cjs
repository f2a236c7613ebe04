// Evaluates one request against IAM policies with @cloud-copilot/iam-simulate (a maintained
// AWS IAM simulator): reads {"simulation": ...} as JSON on stdin, prints the response as JSON.
const { runSimulation } = require("@cloud-copilot/iam-simulate");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  const { simulation } = JSON.parse(input);
  const response = await runSimulation(simulation, {});
  process.stdout.write(JSON.stringify(response));
});
