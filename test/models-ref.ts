// An independent PyTorch implementation of LXMERT, LXMERT-S and SemVLP for the model tests and the
// model benchmark, written from the papers and shared/reference/official-code-facts.md (not from
// vlpkit's TypeScript). Parameter names are the official checkpoint names, so a state dict moves
// between the two implementations by name. Configs are the TypeScript config objects (camelCase
// keys), passed as JSON.
import type { Tensor } from "../src/engine/tensor.ts";
import type { Module } from "../src/engine/nn.ts";
import type { TorchRef } from "./torchref.ts";

export const PY_MODELS = String.raw`
import json
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


def ext_mask(m):
    # [B, S] (1 = attend) -> additive [B, 1, 1, S]
    if m is None:
        return None
    return (1.0 - m[:, None, None, :].float()) * -10000.0


def act(c, x):
    a = c["hiddenAct"]
    if a == "gelu":
        return F.gelu(x)
    if a == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if a == "relu":
        return F.relu(x)
    return F.silu(x)


class MHA(nn.Module):
    """Multi-head attention, queries from x, keys/values from ctx; returns (context, probs)."""
    def __init__(self, c):
        super().__init__()
        h = c["hiddenSize"]
        self.nh = c["numAttentionHeads"]
        self.dh = h // self.nh
        self.p = c["attentionProbsDropoutProb"]
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)

    def split(self, t):
        b, s, _ = t.shape
        return t.view(b, s, self.nh, self.dh).transpose(1, 2)

    def forward(self, x, ctx, mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(ctx)), self.split(self.value(ctx))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh)
        if mask is not None:
            scores = scores + mask
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(F.dropout(probs, self.p, self.training), v)
        return out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1), probs


class AddNorm(nn.Module):
    """LayerNorm(dropout(dense(x)) + residual)."""
    def __init__(self, c, din):
        super().__init__()
        h = c["hiddenSize"]
        self.dense = nn.Linear(din, h)
        self.LayerNorm = nn.LayerNorm(h, eps=c["layerNormEps"])
        self.p = c["hiddenDropoutProb"]

    def forward(self, x, res):
        return self.LayerNorm(F.dropout(self.dense(x), self.p, self.training) + res)


class AttBlock(nn.Module):
    """Attention sub-layer; the attention child is called 'self' (BERT) or 'att' (LXMERT cross)."""
    def __init__(self, c, child="self"):
        super().__init__()
        self.child = child
        setattr(self, child, MHA(c))
        self.output = AddNorm(c, c["hiddenSize"])

    def forward(self, x, ctx, mask):
        o, p = getattr(self, self.child)(x, ctx, mask)
        return self.output(o, x), p


class Inter(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.dense = nn.Linear(c["hiddenSize"], c["intermediateSize"])

    def forward(self, x):
        return act(self.c, self.dense(x))


class Block(nn.Module):
    """BERT block: self-attention, optional cross-attention (decoder style), FFN."""
    def __init__(self, c, cross=False):
        super().__init__()
        self.attention = AttBlock(c)
        if cross:
            self.crossattention = AttBlock(c)
        self.intermediate = Inter(c)
        self.output = AddNorm(c, c["intermediateSize"])

    def forward(self, x, mask, ctx=None, ctx_mask=None):
        a, p = self.attention(x, x, mask)
        cp = None
        if ctx is not None:
            a, cp = self.crossattention(a, ctx, ctx_mask)
        return self.output(self.intermediate(a), a), p, cp


class Emb(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hiddenSize"]
        pad = c["embeddingPaddingIdx"]
        self.word_embeddings = nn.Embedding(c["vocabSize"], h, padding_idx=None if pad == "none" else 0)
        self.position_embeddings = nn.Embedding(c["maxPositionEmbeddings"], h, padding_idx=0 if pad == "all" else None)
        self.token_type_embeddings = nn.Embedding(c["typeVocabSize"], h, padding_idx=0 if pad == "all" else None)
        self.LayerNorm = nn.LayerNorm(h, eps=c["layerNormEps"])
        self.p = c["hiddenDropoutProb"]

    def forward(self, ids, types=None, pos=None):
        if pos is None:
            pos = torch.arange(ids.shape[1])[None, :].expand_as(ids)
        if types is None:
            types = torch.zeros_like(ids)
        e = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings(types)
        return F.dropout(self.LayerNorm(e), self.p, self.training)


class ObjEnc(nn.Module):
    """(LN(W_f feat) + LN(W_b box)) / 2, dropout."""
    def __init__(self, c):
        super().__init__()
        h = c["hiddenSize"]
        self.visn_fc = nn.Linear(c["visualFeatDim"], h)
        self.visn_layer_norm = nn.LayerNorm(h, eps=c["layerNormEps"])
        self.box_fc = nn.Linear(c["visualPosDim"], h)
        self.box_layer_norm = nn.LayerNorm(h, eps=c["layerNormEps"])
        self.p = c["hiddenDropoutProb"]

    def forward(self, f, b):
        return F.dropout((self.visn_layer_norm(self.visn_fc(f)) + self.box_layer_norm(self.box_fc(b))) / 2, self.p, self.training)


class Pool(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hiddenSize"], c["hiddenSize"])

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class Transform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.dense = nn.Linear(c["hiddenSize"], c["hiddenSize"])
        self.LayerNorm = nn.LayerNorm(c["hiddenSize"], eps=c["layerNormEps"])

    def forward(self, x):
        return self.LayerNorm(act(self.c, self.dense(x)))


class LMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = Transform(c)
        self.decoder = nn.Linear(c["hiddenSize"], c["vocabSize"], bias=False)
        self.bias = nn.Parameter(torch.zeros(c["vocabSize"]))

    def forward(self, x):
        return self.decoder(self.transform(x)) + self.bias


class Cls(nn.Module):
    def __init__(self, c, topic=False):
        super().__init__()
        self.predictions = LMHead(c)
        self.seq_relationship = nn.Linear(c["hiddenSize"], 2)
        self.topic = topic
        if topic:
            self.seq_relationship_new = nn.Linear(c["hiddenSize"], c["vocabSize"])
            self.LayerNorm = nn.LayerNorm(c["vocabSize"], eps=c["layerNormEps"])


class ObjHead(nn.Module):
    def __init__(self, c, pooled_product=False):
        super().__init__()
        self.transform = Transform(c)
        dims = {"obj": c["numObjectLabels"], "attr": c["numAttrLabels"], "feat": c["visualFeatDim"]}
        self.decoder_dict = nn.ModuleDict({k: nn.Linear(c["hiddenSize"], dims[k]) for k in c["visualLosses"]})
        self.pooled_product = pooled_product

    def forward(self, regions, pooled):
        h = self.transform(regions)
        if self.pooled_product:
            h = h * pooled[:, None, :]
        return {k: m(h) for k, m in self.decoder_dict.items()}


class AnswerHead(nn.Module):
    def __init__(self, c, n):
        super().__init__()
        h = c["hiddenSize"]
        self.logit_fc = nn.Sequential(nn.Linear(h, 2 * h), nn.GELU(), nn.LayerNorm(2 * h, eps=c["layerNormEps"]), nn.Linear(2 * h, n))

    def forward(self, x):
        return self.logit_fc(x)


# ---------------------------------------------------------------- LXMERT / LXMERT-S

class XLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.visual_attention = AttBlock(c, "att")
        self.lang_self_att = AttBlock(c)
        self.visn_self_att = AttBlock(c)
        self.lang_inter = Inter(c)
        self.lang_output = AddNorm(c, c["intermediateSize"])
        self.visn_inter = Inter(c)
        self.visn_output = AddNorm(c, c["intermediateSize"])

    def forward(self, l, lm, v, vm):
        # the same cross-attention module serves both directions, on the layer inputs
        l1, p_lv = self.visual_attention(l, v, vm)
        v1, p_vl = self.visual_attention(v, l, lm)
        l2, p_l = self.lang_self_att(l1, l1, lm)
        v2, p_v = self.visn_self_att(v1, v1, vm)
        return self.lang_output(self.lang_inter(l2), l2), self.visn_output(self.visn_inter(v2), v2), (p_lv, p_vl, p_l, p_v)


class LxEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.visn_fc = ObjEnc(c)
        self.layer = nn.ModuleList([Block(c) for _ in range(c["lLayers"])])
        self.x_layers = nn.ModuleList([XLayer(c) for _ in range(c["xLayers"])])
        self.r_layers = nn.ModuleList([Block(c) for _ in range(c["rLayers"])])


class LxBackbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embeddings = Emb(c)
        self.encoder = LxEncoder(c)
        self.pooler = Pool(c)
        if c["productPooler"]:
            self.pooler_f = Pool(c)
        if c["visualCls"]:
            self.word_embeddings = nn.Embedding(c["vocabSize"], c["visualFeatDim"], padding_idx=None if c["embeddingPaddingIdx"] == "none" else 0)

    def forward(self, ids, types, mask, pos, feats, boxes, vmask, rec):
        c = self.c
        lm = ext_mask(mask)
        lang = self.embeddings(ids, types, pos if c["wordPositions"] else None)
        if c["visualCls"]:
            b = ids.shape[0]
            feats = torch.cat([self.word_embeddings(ids[:, 0])[:, None, :], feats], dim=1)
            boxes = torch.cat([torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(b, 1, 4), boxes], dim=1)
            if vmask is not None:
                vmask = torch.cat([torch.ones(b, 1, dtype=vmask.dtype), vmask], dim=1)
        vm = ext_mask(vmask)
        enc = self.encoder
        visn = enc.visn_fc(feats, boxes)
        rec["lh.0"] = lang
        rec["vh.0"] = visn
        nl = nv = 0
        for blk in enc.layer:
            lang, p, _ = blk(lang, lm)
            rec["la.%d" % nl] = p
            nl += 1
            rec["lh.%d" % nl] = lang
        for blk in enc.r_layers:
            visn, p, _ = blk(visn, vm)
            rec["va.%d" % nv] = p
            nv += 1
            rec["vh.%d" % nv] = visn
        for i, xl in enumerate(enc.x_layers):
            lang, visn, (p_lv, p_vl, p_l, p_v) = xl(lang, lm, visn, vm)
            rec["l2v.%d" % i] = p_lv
            rec["v2l.%d" % i] = p_vl
            rec["la.%d" % nl] = p_l
            rec["va.%d" % nv] = p_v
            nl += 1
            nv += 1
            rec["lh.%d" % nl] = lang
            rec["vh.%d" % nv] = visn
        pooled = self.pooler(lang)
        if c["productPooler"]:
            pooled = pooled * self.pooler_f(visn)
        return lang, visn, pooled


class LxmertPre(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.bert = LxBackbone(c)
        self.cls = Cls(c, topic=c["topicHead"])
        if c["tieWordEmbeddings"]:
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        if c["taskObjPredict"]:
            self.obj_predict_head = ObjHead(c, pooled_product=c["objHeadPooledProduct"])
        if c["taskQa"]:
            self.answer_head = AnswerHead(c, c["numQaLabels"])

    def forward(self, ids, types=None, mask=None, pos=None, feats=None, boxes=None, vmask=None):
        c = self.c
        rec = {}
        lang, visn, pooled = self.bert(ids, types, mask, pos, feats, boxes, vmask, rec)
        out = {"lang": lang, "visn": visn, "pooled": pooled}
        out["lmLogits"] = self.cls.predictions(lang)
        out["matchLogits"] = self.cls.seq_relationship(pooled)
        if c["topicHead"]:
            out["topic"] = self.cls.LayerNorm(F.gelu(self.cls.seq_relationship_new(pooled)))
        regions = visn[:, 1:] if c["visualCls"] else visn
        if c["taskObjPredict"]:
            out.update(self.obj_predict_head(regions, pooled))
        if c["taskQa"]:
            out["answerLogits"] = self.answer_head(pooled)
        out.update(rec)
        return out


# ---------------------------------------------------------------- SemVLP

class SemEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.visn_fc = ObjEnc(c)
        self.img_embedding = nn.Embedding(1, c["hiddenSize"])
        self.layer = nn.ModuleList([Block(c, cross=i >= c["crossLayerStart"]) for i in range(c["numHiddenLayers"])])


class SemBackbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embeddings = Emb(c)
        self.encoder = SemEncoder(c)
        self.pooler = Pool(c)

    def image(self, feats, boxes):
        r = self.encoder.visn_fc(feats, boxes)
        img = F.dropout(self.encoder.img_embedding.weight[None].expand(r.shape[0], 1, r.shape[2]), self.c["hiddenDropoutProb"], self.training)
        return torch.cat([img, r], dim=1)

    def forward(self, mode, ids, types, mask, pos, feats, boxes, vmask, rec):
        text = self.embeddings(ids, types, pos)
        image = self.image(feats, boxes)
        b, n_img = image.shape[0], image.shape[1]
        img_mask = None if vmask is None else torch.cat([torch.ones(b, 1), vmask.float()], dim=1)
        if mode == "single":
            # S^0 = [IMG], regions, [CLS] words [SEP]; one sequence through the blocks, no cross-attention
            joint = None
            if mask is not None or vmask is not None:
                im = img_mask if img_mask is not None else torch.ones(b, n_img)
                tm = mask.float() if mask is not None else torch.ones(b, ids.shape[1])
                joint = torch.cat([im, tm], dim=1)
            m = ext_mask(joint)
            s = torch.cat([image, text], dim=1)
            rec["h.0"] = s
            for i, blk in enumerate(self.encoder.layer):
                s, p, _ = blk(s, m)
                rec["a.%d" % i] = p
                rec["h.%d" % (i + 1)] = s
            img_out, txt_out = s[:, :n_img], s[:, n_img:]
            return txt_out, img_out, self.pooler(txt_out)
        # two-stream: text alone through all blocks; image below L_s alone, above L_s its block
        # also attends (queries) to the final text states H^L
        tm = ext_mask(mask)
        im = ext_mask(img_mask)
        h = text
        for i, blk in enumerate(self.encoder.layer):
            h, p, _ = blk(h, tm)
            rec["ta.%d" % i] = p
            rec["th.%d" % (i + 1)] = h
        o = image
        for i, blk in enumerate(self.encoder.layer):
            if i < self.c["crossLayerStart"]:
                o, p, cp = blk(o, im)
            else:
                o, p, cp = blk(o, im, h, tm)
                rec["ca.%d" % i] = cp
            rec["ia.%d" % i] = p
            rec["ih.%d" % (i + 1)] = o
        return h, o, self.pooler(o)


class SemVLPPre(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.bert = SemBackbone(c)
        self.cls = Cls(c)
        if c["tieWordEmbeddings"]:
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        if c["taskObjPredict"]:
            self.obj_predict_head = ObjHead(c)
        if c["taskQa"]:
            self.answer_head = AnswerHead(c, c["numQaLabels"])

    def forward(self, mode, ids, types=None, mask=None, pos=None, feats=None, boxes=None, vmask=None):
        rec = {}
        txt, img, pooled = self.bert(mode, ids, types, mask, pos, feats, boxes, vmask, rec)
        out = {"text": txt, "image": img, "pooled": pooled}
        out["lmLogits"] = self.cls.predictions(txt)
        out["matchLogits"] = self.cls.seq_relationship(pooled)
        if self.c["taskObjPredict"]:
            out.update(self.obj_predict_head(img[:, 1:], None))
        if self.c["taskQa"]:
            out["answerLogits"] = self.answer_head(pooled)
        out.update(rec)
        return out


# ---------------------------------------------------------------- helpers for the test cases

def load_weights(model, I, names):
    sd = {n: I["w." + n] for n in names}
    missing, unexpected = model.load_state_dict(sd, strict=True)
    return model


def opt(I, k):
    return I[k] if k in I else None


def weighted_loss(out, I, keys):
    total = 0.0
    for k in keys:
        total = total + (out[k] * I["lw." + k]).sum()
    return total


def emit_grads(O, model):
    for n, p in model.named_parameters():
        O["grad." + n] = p.grad
`;

/** Put every state-dict entry of a model as the case input `w.<name>`; returns the names. */
export function putWeights(ref: TorchRef, caseName: string, model: Module): string[] {
  const names: string[] = [];
  for (const [n, t] of model.stateDict()) {
    ref.put(`${caseName}/w.${n}`, t);
    names.push(n);
  }
  return names;
}

/** Put named tensors (inputs, loss weights) as case inputs; undefined/null entries are skipped. */
export function putAll(ref: TorchRef, caseName: string, tensors: Record<string, Tensor | null | undefined>): void {
  for (const [k, t] of Object.entries(tensors)) if (t) ref.put(`${caseName}/${k}`, t);
}

/** Python expression list of the optional inputs, in the reference forward's order. */
export const PY_INPUT_ARGS = `opt(I, "ids"), opt(I, "types"), opt(I, "mask"), opt(I, "pos"), opt(I, "feats"), opt(I, "boxes"), opt(I, "vmask")`;

/** A JSON value as a Python expression (json.loads of a string literal). */
export function pyJson(v: unknown): string {
  return `json.loads(${JSON.stringify(JSON.stringify(v))})`;
}
