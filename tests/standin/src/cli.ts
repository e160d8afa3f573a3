// cto-harness stand-in for a provider CLI named `ca`. Test material, written for cto-harness.
import { mkdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { PACKAGE_ASSETS } from "./generated/package-assets";
import { markReviewed, markTested, session, status } from "./helpers";
import { runCommand } from "./run";
import { SCENARIO } from "./scenario";

const COMMANDS: Array<[string, string]> = [
  ["run", "Run the task pipeline for a task file"],
  ["watch", "Follow a running pipeline"],
  ["create", "Create a task"],
  ["session", "Show the current session"],
  ["status", "Show task status"],
  ["mark-tested", "Record that the change was tested"],
  ["mark-manual-tested", "Record a manual test"],
  ["mark-reviewed", "Record a review"],
  ["upload", "Upload evidence"],
  ["snapshot", "Snapshot the working tree"],
  ["init", "Set up a repository"],
  ["analyze-failure", "Explain a failed run"],
  ["bootstrap", "Prepare the data directory"],
  ["check", "Check the installation"],
];

function mainHelp(): string {
  const lines = ["Usage: ca <command> [options]", "", "Commands:"];
  for (const [name, summary] of COMMANDS) lines.push(`  ${name.padEnd(20)}${summary}`);
  lines.push("", "Run `ca <command> --help` for a command's options.");
  return lines.join("\n");
}

function runHelp(): string {
  return [
    "Usage: ca run [options]",
    "",
    "Options:",
    "  --task, -t <file>   task file (.task.json) to run",
    '  --mode <mode>       "attended" (default) or "unattended"',
    "  --help, -h          show this help",
  ].join("\n");
}

// Like the tool it stands in for, every start writes a little state: under the agent dir and the
// data dir (default: below $HOME). The harness must give it private ones.
function touchState(): void {
  const agentDir = process.env.PI_CODING_AGENT_DIR || join(homedir(), ".pi", "agent");
  const dataDir = process.env.CASE_DATA_DIR || join(homedir(), ".config", "case");
  mkdirSync(agentDir, { recursive: true });
  writeFileSync(join(agentDir, "auth.json"), "{}\n");
  mkdirSync(join(dataDir, "pi-package"), { recursive: true });
  writeFileSync(join(dataDir, "pi-package", "package.json"), '{"name":"pi-package"}\n');
}

function fatal(message: string): never {
  console.error(`Fatal: ${message}`);
  process.exit(1);
}

async function main(argv: string[]): Promise<void> {
  touchState();
  const wantsHelp = argv.includes("--help") || argv.includes("-h");
  const command = argv[0] && !argv[0].startsWith("-") ? argv[0] : undefined;

  if (wantsHelp && SCENARIO === "help-hangs") {
    await new Promise(() => setInterval(() => {}, 1000));
  }
  if (wantsHelp && SCENARIO === "help-without-markers") {
    console.log("Usage: case <string> [--to camel|snake|kebab]\n\nConverts the case of a string.");
    return;
  }
  if (wantsHelp && command === undefined) {
    console.log(mainHelp());
    return;
  }
  if (command === "run" && wantsHelp) {
    console.log(runHelp());
    return;
  }
  if (command === "check") {
    console.log(`stand-in ok: scenario ${SCENARIO}, ${Object.keys(PACKAGE_ASSETS).length} asset(s)`);
    return;
  }
  if (command === undefined) {
    // No command (for instance `--version`, which is not a flag): the default run path.
    fatal("no task given and no active task to resume (stand-in default run path)");
  }
  if (command === "run") return runCommand(argv.slice(1), SCENARIO);
  const helpers: Record<string, (args: string[]) => number | Promise<number>> = {
    "mark-tested": markTested, "mark-reviewed": markReviewed, status, session,
  };
  if (command in helpers) process.exit(await helpers[command](argv.slice(1)));
  if (!COMMANDS.some(([name]) => name === command)) fatal(`unknown command: ${command}`);
  fatal(`${command}: not implemented in stand-in`);
}

await main(process.argv.slice(2));
