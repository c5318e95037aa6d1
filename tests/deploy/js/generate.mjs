// Greedy generation with transformers.js from an ONNX model folder, on given inputs (no downloads):
//   node generate.mjs FOLDER INPUTS.json OUT.json
// INPUTS.json: {pixel_values: {dims, data}, input_ids: [[...]], attention_mask: [[...]], max_new_tokens,
//               no_repeat_ngram_size, dtype}
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { env, Florence2ForConditionalGeneration, Tensor } from "@huggingface/transformers";

const [folder, inputsPath, outPath] = process.argv.slice(2);
const inputs = JSON.parse(readFileSync(inputsPath, "utf8"));
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(path.resolve(folder));

const model = await Florence2ForConditionalGeneration.from_pretrained(path.basename(folder), {
  dtype: inputs.dtype ?? "fp32", device: "cpu", local_files_only: true,
});
const int64 = (rows) => new Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
const ids = await model.generate({
  pixel_values: new Tensor("float32", Float32Array.from(inputs.pixel_values.data), inputs.pixel_values.dims),
  input_ids: int64(inputs.input_ids),
  attention_mask: int64(inputs.attention_mask),
  max_new_tokens: inputs.max_new_tokens,
  num_beams: 1,
  do_sample: false,
  no_repeat_ngram_size: inputs.no_repeat_ngram_size ?? 0,
});
writeFileSync(outPath, JSON.stringify({ ids: ids.tolist().map((row) => row.map(Number)) }));
await model.dispose();
