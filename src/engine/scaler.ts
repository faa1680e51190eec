// Dynamic loss scaling for float16 training, torch.cuda.amp.GradScaler's rule: the loss is multiplied
// by `scale` before backward so that small float16 gradients do not flush to zero; before clipping and
// the optimizer step the gradients are divided by it again. A step whose gradients hold an inf or NaN
// is skipped and the scale halved; after `growthInterval` good steps in a row it is doubled. The
// scale is a power of two, so scaling and unscaling float32 gradients are exact.
import { callVoid, noGrad, type Tensor } from "./tensor.ts";
import { tidy } from "./scope.ts";
import { hasNonFiniteGrad } from "./grad.ts";

export interface ScalerState {
  scale: number;
  goodSteps: number;
}

export class GradScaler {
  scale: number;
  /** Steps in a row without a non-finite gradient since the scale last changed. */
  goodSteps = 0;
  readonly growthInterval: number;

  constructor(o: { initScale?: number; growthInterval?: number } = {}) {
    this.scale = o.initScale ?? 2 ** 16;
    this.growthInterval = o.growthInterval ?? 2000;
  }

  /** The loss to backpropagate. */
  scaleLoss(loss: Tensor): Tensor {
    return loss.mul(this.scale);
  }

  /**
   * Divides the gradients of `params` by the scale and returns true; or, when one of them is not
   * finite, leaves them and returns false: the step must be skipped.
   */
  unscale(params: Tensor[]): boolean {
    if (hasNonFiniteGrad(params)) return false;
    noGrad(() =>
      tidy(() => {
        const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
        if (grads.length) callVoid("aten::_foreach_mul_.Scalar", grads, { float: 1 / this.scale });
      }),
    );
    return true;
  }

  /** After each step: `stepped` false (non-finite gradients) halves the scale, a run of good steps doubles it. */
  update(stepped: boolean): void {
    if (!stepped) {
      this.scale /= 2;
      this.goodSteps = 0;
    } else if (++this.goodSteps >= this.growthInterval) {
      this.scale *= 2;
      this.goodSteps = 0;
    }
  }

  stateDict(): ScalerState {
    return { scale: this.scale, goodSteps: this.goodSteps };
  }

  loadStateDict(s: ScalerState): void {
    this.scale = s.scale;
    this.goodSteps = s.goodSteps;
  }
}
