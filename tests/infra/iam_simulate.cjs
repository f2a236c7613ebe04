// Evaluates requests against IAM policies with @cloud-copilot/iam-simulate (a maintained AWS
// IAM simulator): reads {"simulations": [...]} as JSON on stdin, prints the responses as JSON.
const { runSimulation } = require("@cloud-copilot/iam-simulate");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  const { simulations } = JSON.parse(input);
  const responses = [];
  for (const simulation of simulations) {
    responses.push(await runSimulation(simulation, {}));
  }
  process.stdout.write(JSON.stringify(responses));
});
