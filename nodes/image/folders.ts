// Where the image nodes read and write: ComfyUI's input / output / temp folders. The server and
// the CLI configure them once per process (and per worker thread) before nodes run; the
// defaults are the folders of the current directory, as for `sana-graph serve` with no flags.
import path from 'node:path';

export interface ImageFolders {
  output: string;
  input: string;
  temp: string;
}

let folders: ImageFolders = {
  output: path.resolve('output'),
  input: path.resolve('input'),
  temp: path.resolve('temp'),
};

export function setImageFolders(f: Partial<ImageFolders>): void {
  folders = {
    output: path.resolve(f.output ?? folders.output),
    input: path.resolve(f.input ?? folders.input),
    temp: path.resolve(f.temp ?? folders.temp),
  };
}

export function imageFolders(): ImageFolders {
  return folders;
}

export type FolderType = keyof ImageFolders;

export function isFolderType(t: string): t is FolderType {
  return t === 'output' || t === 'input' || t === 'temp';
}
