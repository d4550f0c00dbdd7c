// The weights a loaded model owns: loaded by its layout (layout.ts) in the right dtype, looked up
// by checkpoint name, fused or reshaped once, counted for the model cache and disposed together.
// A LoRA-patched model's set borrows every weight of its base model that no changed tensor
// touches, so it holds (and frees) only what it merged.
import type { Backend, DType, SafetensorsCheckpoint, Tensor } from '../../native/api.ts';
import type { Layout } from './layout.ts';

/** The part of a checkpoint a loader reads (a SafetensorsCheckpoint fits; tests and benches
 *  pass synthetic sources). */
export type WeightSource = Pick<SafetensorsCheckpoint, 'keys' | 'has' | 'entry' | 'load'>;

/** What a patched model's set borrows from its base model's set. */
export interface BorrowFrom {
  /** The base set's slots (see `WeightSet.slots`). */
  slots: ReadonlyMap<string, Tensor>;
  /** Checkpoint tensors the new set loads itself: every slot touching one is rebuilt. */
  changed: ReadonlySet<string>;
}

export class WeightSet {
  /** Every weight a forward uses, by slot key: the checkpoint name, `+`-joined names for a
   *  concatenation, `@AxB` appended for a reshaped view, `:f32` for a bias kept in f32. */
  readonly slots = new Map<string, Tensor>();
  private readonly owned: Tensor[] = [];
  private readonly f32Names: ReadonlySet<string>;
  private disposed = false;

  constructor(
    private readonly src: WeightSource,
    private readonly backend: Backend,
    readonly dtype: DType,
    layout?: Layout,
    private readonly borrow?: BorrowFrom,
  ) {
    this.f32Names = new Set((layout ?? []).filter((e) => e.dtype === 'f32').map((e) => e.name));
  }

  /** The checkpoint tensor `name` (in the compute dtype, or f32 where the layout says so). */
  get(name: string): Tensor {
    return this.slot(name, [name], () => this.load(name));
  }

  /** `get(name)` viewed as `shape` (both kept: a backend's packed copy hangs off the view). */
  as(name: string, shape: readonly number[]): Tensor {
    return this.slot(`${name}@${shape.join('x')}`, [name], () => this.keep(this.backend.reshape(this.get(name), [...shape])));
  }

  /** The checkpoint tensor `name` loaded straight into `shape` (it owns its storage: a linear
   *  weight whose original can be freed once packed). `get(name)` would load a second copy. */
  reshaped(name: string, shape: readonly number[]): Tensor {
    return this.slot(`${name}@${shape.join('x')}`, [name], () => this.keep(this.backend.reshape(this.src.load(name, this.backend, this.dtypeOf(name)), [...shape], { consume: true })));
  }

  /** A bias: loaded in the compute dtype (rounded as the reference's cast of the checkpoint
   *  rounds it), then kept in f32, the dtype every op reads a bias in; a bf16 bias was cast
   *  again by each call (6 small casts per Sana block per step). */
  bias(name: string): Tensor {
    return this.slot(`${name}:f32`, [name], () => {
      const t = this.src.load(name, this.backend, this.dtypeOf(name));
      if (t.dtype === 'f32') return this.keep(t);
      try {
        return this.keep(this.backend.cast(t, 'f32'));
      } finally {
        t.dispose();
      }
    });
  }

  /** The tensors concatenated along dim 0 (parts freed), optionally viewed as `shape`. */
  cat(names: readonly string[], shape?: readonly number[]): Tensor {
    const key = names.join('+');
    const whole = this.slot(key, names, () => {
      const parts = names.map((n) => this.src.load(n, this.backend, this.dtypeOf(n)));
      const t = this.backend.concat(parts, 0);
      parts.forEach((p) => p.dispose());
      return this.keep(t);
    });
    if (!shape) return whole;
    return this.slot(`${key}@${shape.join('x')}`, names, () => this.keep(this.backend.reshape(whole, [...shape])));
  }

  /** A tensor made by the model itself (not from the checkpoint) that the set now owns. */
  keep(t: Tensor): Tensor {
    this.owned.push(t);
    return t;
  }

  /** Bytes held by what this set owns (views count 0; borrowed weights are the base's). */
  get bytes(): number {
    return this.owned.reduce((s, t) => s + t.nbytes, 0);
  }

  /** Frees what this set owns, views before their storage; idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.owned].reverse()) if (!t.disposed) t.dispose();
  }

  /** Runs `build` with this set, disposing it when building throws. */
  build<M>(build: (w: WeightSet) => M): M {
    try {
      return build(this);
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  private dtypeOf(name: string): DType {
    return this.f32Names.has(name) ? 'f32' : this.dtype;
  }

  private load(name: string): Tensor {
    return this.keep(this.src.load(name, this.backend, this.dtypeOf(name)));
  }

  private slot(key: string, names: readonly string[], make: () => Tensor): Tensor {
    let t = this.slots.get(key);
    if (t) return t;
    const b = this.borrow;
    t = (b && !names.some((n) => b.changed.has(n)) ? b.slots.get(key) : undefined) ?? make();
    this.slots.set(key, t);
    return t;
  }
}
