// `vlp serve --checkpoint <run dir> [--vqa <finetune dir>] [--index <dir>] [--runs <dir>] [--port N]`:
// the JSON API and the web app over a VLMo checkpoint (src/serve/server.ts).
import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { loadServedModel, type ServedModel } from "../serve/model.ts";
import { VectorIndex } from "../serve/vindex.ts";
import { buildServer, DEFAULT_BODY_LIMIT } from "../serve/server.ts";
import { isLoopback } from "../serve/guard.ts";
import { hostname, networkInterfaces } from "node:os";
import { DEVICE_OPTION, PRECISION_OPTION, deviceFlag, precisionFlag, usableDevice } from "./device.ts";

const USAGE = `vlp serve --checkpoint <run dir> [--vqa <finetune dir>] [--index <dir>] [--images <dir>] [--runs <dir>] [--host H] [--port N] [--token T] [--allow-host NAME ...] [--body-limit MB] [--device D] [--precision fp32|bf16|fp16]

  --checkpoint  a VLMo run directory (pre-training or fine-tuning): /embed, /search, /itm, /attention
  --vqa         a VQA fine-tuned VLMo run (vlp finetune vqa) for /vqa, when --checkpoint has no VQA head
  --index       an index folder built by \`vlp index build\` with the same checkpoint (for /search)
  --images      serve the index's images under /images/ from this folder (the index's image folder must be inside it;
                symlinks leading out of it are not followed); without it no image file is served
  --runs        folder of training runs for the dashboard (default: runs, when it exists)
  --host        address to listen on (default 127.0.0.1); --port (default 8080; 0 = any free port).
                --host 0.0.0.0 exposes every route (models, index, images, run metrics) to the network: use --token
  --token       require \`Authorization: Bearer T\` on every request but the web app's files (env VLP_TOKEN; web app: /#token=T)
  --allow-host  on a non-loopback bind, a Host name answered besides the bound address (repeatable; with 0.0.0.0 the
                machine's addresses and host name are allowed); other Host headers get 421
  --device      cpu (default), cuda or cuda:N: where the models run (the index stays in host memory)
  --precision   fp32 (default), or bf16 / fp16 (CUDA only) autocast for every forward pass (weights stay float32)`;

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      checkpoint: { type: "string" },
      vqa: { type: "string" },
      index: { type: "string" },
      runs: { type: "string" },
      images: { type: "string" },
      token: { type: "string" },
      "allow-host": { type: "string", multiple: true, default: [] },
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8080" },
      "body-limit": { type: "string" },
      log: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      ...DEVICE_OPTION,
      ...PRECISION_OPTION,
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.checkpoint) throw new Error(`--checkpoint <run dir> is required\n${USAGE}`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: expected 0-65535, got "${values.port}"`);
  const limitMb = values["body-limit"] === undefined ? DEFAULT_BODY_LIMIT / 1048576 : Number(values["body-limit"]);
  if (!(limitMb > 0 && limitMb <= 1024)) throw new Error(`--body-limit: expected megabytes in (0, 1024], got "${values["body-limit"]}"`);

  const device = await usableDevice(deviceFlag(values.device) ?? "cpu", true);
  const precision = precisionFlag(values.precision, device);
  const models: ServedModel[] = [await loadServedModel(values.checkpoint, undefined, device)];
  if (values.vqa) {
    const v = await loadServedModel(values.vqa, undefined, device);
    if (!v.labels) throw new Error(`--vqa ${values.vqa}: this checkpoint has no VQA head (expected a \`vlp finetune vqa\` run)`);
    if (v.name === models[0].name) v.name = `${v.name}-vqa`;
    models.push(v);
  }
  let index: VectorIndex | null = null;
  let indexModel: string | undefined;
  if (values.index) {
    index = VectorIndex.open(values.index);
    const want = resolve(index.manifest.checkpoint);
    const same = models.find((m) => m.dir === want);
    if (same) indexModel = same.name;
    else if (index.dim === models[0].model.config.hiddenSize) {
      console.error(`vlp serve: warning: index ${values.index} was built with ${index.manifest.checkpoint}, not ${models[0].dir}; its vectors only match this checkpoint's queries if the encoders are the same`);
    } else {
      throw new Error(`--index ${values.index}: built with ${index.manifest.checkpoint} (${index.dim}-d vectors); serve it with --checkpoint ${index.manifest.checkpoint}`);
    }
  }
  const runsRoot = values.runs ?? (existsSync("runs") ? "runs" : null);
  if (values.runs && !existsSync(values.runs)) throw new Error(`--runs ${values.runs}: folder not found`);
  const token = values.token ?? process.env.VLP_TOKEN ?? null;
  if (token !== null && token.length < 16) throw new Error("--token / VLP_TOKEN: use at least 16 characters");
  const allowedHosts = isLoopback(values.host!) ? null : [...bindNames(values.host!), ...values["allow-host"]!];
  if (!isLoopback(values.host!) && !token) console.error(`vlp serve: warning: listening on ${values.host} without --token: anyone who can reach this port can use every route`);
  const app = await buildServer({ models, index, indexModel, runsRoot, bodyLimit: limitMb * 1048576, logger: values.log, imagesRoot: values.images ?? null, token, allowedHosts, precision });
  const address = await app.listen({ host: values.host, port });
  const vqa = models.find((m) => m.labels);
  console.log(`vlp serve: ${models.map((m) => m.name).join(", ")}${device !== "cpu" ? ` (${device})` : ""}${precision ? ` [${values.precision} autocast]` : ""} on ${address} (web app ${address}/, API docs ${address}/docs.html)`);
  console.log(`  index: ${index ? `${index.part("image")?.count ?? 0} images, ${index.part("text")?.count ?? 0} captions (${index.dtype})` : "none (/search answers 409; build one with vlp index build)"}; ` +
    `VQA: ${vqa ? vqa.name : "none (/vqa answers 409; pass --vqa <vlp finetune vqa run>)"}; runs: ${runsRoot ?? "none"}; ` +
    `images: ${values.images ? `under ${values.images}` : index?.manifest.imagesRoot ? `not served (pass --images ${index.manifest.imagesRoot})` : "none"}${token ? "; token required" : ""}`);
  const stop = async () => {
    await app.close();
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

/** The Host names a bind answers to: the address itself, or with 0.0.0.0 / :: every address and name of this machine. */
function bindNames(host: string): string[] {
  if (host !== "0.0.0.0" && host !== "::") return [host];
  const addrs = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address));
  return [...addrs, hostname(), "localhost"];
}
